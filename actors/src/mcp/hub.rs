//! The MCP hub: every configured server, its live client, and the merged tool table.
//!
//! The hub is shared state (an `Arc`), not an actor: the tool-call hot path reads it directly,
//! so a call crosses no mailbox on its way to a server. Connection actors
//! (`root/mcp_servers/mcp:<name>`) write into it: they register their server, publish a client
//! and its tools when the handshake succeeds, and withdraw the client when the connection ends.
//! A server's tools stay registered while it restarts, so clients see a stable list; calls in
//! that window fail fast with the server's state (`restarting, next attempt in 2 s`, `failed:
//! …`).
//!
//! The tool table is an immutable snapshot swapped on every change (readers clone an `Arc`);
//! each change bumps a version and is broadcast, so the MCP server can tell its sessions
//! `notifications/tools/list_changed`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::client::{CallError, CallOptions, McpClient};
use super::naming;
use super::protocol::{Root, ServerHello};
use super::wrapper;
use crate::status::{ActorState, StatusNode};

/// How to reach one server.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportSpec {
    /// A child process speaking newline-delimited JSON-RPC on stdio.
    Stdio {
        /// Program.
        command: String,
        /// Arguments.
        args: Vec<String>,
        /// Environment overrides.
        env: Vec<(String, String)>,
        /// Working directory.
        cwd: Option<std::path::PathBuf>,
    },
    /// Streamable HTTP.
    Http {
        /// Endpoint URL.
        url: String,
        /// Headers sent on every request.
        headers: Vec<(String, String)>,
    },
    /// Legacy HTTP+SSE.
    Sse {
        /// The SSE stream URL.
        url: String,
        /// Headers sent on every request.
        headers: Vec<(String, String)>,
    },
    /// A well-known discovery document naming the endpoint.
    Url {
        /// The document URL.
        url: String,
        /// Headers sent on every request.
        headers: Vec<(String, String)>,
    },
}

impl TransportSpec {
    /// `stdio`, `http`, `sse` or `url`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdio { .. } => "stdio",
            Self::Http { .. } => "http",
            Self::Sse { .. } => "sse",
            Self::Url { .. } => "url",
        }
    }
}

/// One external server, as the connection actor runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    /// Server name; the `<name>__` prefix of its tools.
    pub name: String,
    /// How to reach it.
    pub transport: TransportSpec,
    /// Per-call timeout (capped at 600 s by the config layer).
    pub tool_timeout: Duration,
    /// Connect + initialize + tools/list timeout.
    pub handshake_timeout: Duration,
    /// Roots announced to the server.
    pub roots: Vec<Root>,
    /// Restart a call's timeout on each progress notification (capped at 600 s in total).
    pub reset_timeout_on_progress: bool,
}

/// Hard cap on any call, whatever the configuration says.
pub const MAX_CALL: Duration = Duration::from_secs(600);

/// The server's timing policy applied to a caller's options: the caller's timeout, or the
/// server's `tool_timeout` when the caller sets none (zero); progress may reset it when the
/// server is configured so; never more than [`MAX_CALL`] in all.
pub fn effective_options(opts: &CallOptions, spec: &ServerSpec) -> CallOptions {
    let timeout = if opts.timeout.is_zero() {
        spec.tool_timeout
    } else {
        opts.timeout
    };
    CallOptions {
        timeout: timeout.min(MAX_CALL),
        progress: opts.progress.clone(),
        reset_timeout_on_progress: opts.reset_timeout_on_progress || spec.reset_timeout_on_progress,
        max_total: Some(opts.max_total.unwrap_or(MAX_CALL).min(MAX_CALL)),
    }
}

/// One server in the hub.
#[derive(Debug)]
pub struct ServerEntry {
    spec: RwLock<Arc<ServerSpec>>,
    node: StatusNode,
    client: RwLock<Option<Arc<McpClient>>>,
    /// Bumped each time a client is published, for callers waiting on a (re)connect.
    ready: watch::Sender<u64>,
    tools: RwLock<Vec<Value>>,
    hello: RwLock<Option<ServerHello>>,
}

impl ServerEntry {
    /// The server's spec (live: a reload may update timeouts in place).
    pub fn spec(&self) -> Arc<ServerSpec> {
        self.spec
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Its status node.
    pub fn node(&self) -> &StatusNode {
        &self.node
    }

    /// The live client, while connected.
    pub fn client(&self) -> Option<Arc<McpClient>> {
        self.client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Its tools as the server defines them (kept while it restarts).
    pub fn tools(&self) -> Vec<Value> {
        self.tools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What it said in `initialize` (kept while it restarts).
    pub fn hello(&self) -> Option<ServerHello> {
        self.hello
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Calls in flight on the current connection.
    pub fn pending_calls(&self) -> usize {
        self.client().map_or(0, |c| c.pending_calls())
    }

    /// Why a call cannot be made right now, from the supervisor's view of the server.
    fn unavailable(&self) -> Option<String> {
        let name = &self.spec().name;
        match self.node.state() {
            ActorState::BackingOff => {
                let secs = self
                    .node
                    .next_restart_in()
                    .unwrap_or_default()
                    .as_secs_f64();
                let secs = secs.ceil().max(0.0) as u64;
                Some(format!(
                    "server `{name}` is restarting, next attempt in {secs} s"
                ))
            }
            ActorState::Failed => {
                let reason = self
                    .node
                    .last_failure()
                    .unwrap_or_else(|| "gave up restarting".into());
                // A connection's failure (`McpError`) names the server already.
                let prefix = format!("server `{name}`: ");
                let reason = reason.strip_prefix(&prefix).unwrap_or(&reason);
                Some(format!("server `{name}` failed: {reason}"))
            }
            ActorState::Stopped | ActorState::Stopping => {
                Some(format!("server `{name}` is stopped"))
            }
            ActorState::Starting | ActorState::Running => None,
        }
    }

    /// The live client, waiting up to `wait` for a (re)connect in progress. Fails fast when
    /// the server is backing off, failed or stopped.
    pub async fn connected_client(&self, wait: Duration) -> Result<Arc<McpClient>, String> {
        let deadline = Instant::now() + wait;
        let mut ready = self.ready.subscribe();
        loop {
            if let Some(client) = self.client() {
                if client.closed_reason().is_none() {
                    return Ok(client);
                }
            }
            if let Some(reason) = self.unavailable() {
                return Err(reason);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "server `{}` is not connected yet",
                    self.spec().name
                ));
            }
            // Woken by a publish; re-check the supervisor's state every 50 ms meanwhile.
            let tick = deadline.min(Instant::now() + Duration::from_millis(50));
            let _ = tokio::time::timeout_at(tick, ready.changed()).await;
        }
    }
}

/// A routed tool: which server serves it, under which original name.
#[derive(Debug, Clone)]
pub struct ToolRoute {
    /// The exposed name (`server__tool`).
    pub name: String,
    /// The server.
    pub server: Arc<ServerEntry>,
    /// The tool's own name on that server.
    pub tool: String,
    /// The exposed definition (the server's, with `name` replaced).
    pub def: Arc<Value>,
}

/// An immutable snapshot of every external tool, sorted by exposed name.
#[derive(Debug, Default)]
pub struct ToolTable {
    /// Tools by exposed name (shared: a call takes its route without copying it).
    pub tools: BTreeMap<String, Arc<ToolRoute>>,
    /// Name collisions found while building it, as human-readable lines.
    pub collisions: Vec<String>,
    /// The table's version.
    pub version: u64,
}

/// Why a hub call failed before reaching the server's tool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// No tool of that name (and no unique bare-suffix match).
    #[error("unknown tool: {0}")]
    UnknownTool(String),
    /// The name matches tools on several servers.
    #[error("tool name `{name}` is ambiguous: {}", candidates.join(", "))]
    Ambiguous {
        /// The requested name.
        name: String,
        /// Full names it could mean.
        candidates: Vec<String>,
    },
    /// The arguments are not an object.
    #[error("{0}")]
    Arguments(String),
    /// The server cannot take calls now (restarting, failed, stopped).
    #[error("{0}")]
    Unavailable(String),
    /// The call reached the server and failed.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// The registry of external servers and their tools.
#[derive(Debug)]
pub struct McpHub {
    servers: DashMap<String, Arc<ServerEntry>>,
    table: RwLock<Arc<ToolTable>>,
    /// Held for a whole rebuild (read every server's tools, write the table), so rebuilds by
    /// servers publishing at the same moment cannot overwrite a newer table with an older one.
    rebuilding: Mutex<()>,
    version: AtomicU64,
    changes: broadcast::Sender<u64>,
}

impl Default for McpHub {
    fn default() -> Self {
        Self {
            servers: DashMap::new(),
            table: RwLock::new(Arc::new(ToolTable::default())),
            rebuilding: Mutex::new(()),
            version: AtomicU64::new(0),
            changes: broadcast::channel(16).0,
        }
    }
}

impl McpHub {
    /// An empty hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers (or replaces, when its spec changed) a server. Called by its connection actor.
    pub fn register(&self, spec: Arc<ServerSpec>, node: StatusNode) -> Arc<ServerEntry> {
        if let Some(existing) = self.servers.get(&spec.name) {
            if *existing.spec() == *spec && existing.node.path() == node.path() {
                return existing.clone();
            }
        }
        let entry = Arc::new(ServerEntry {
            spec: RwLock::new(spec.clone()),
            node,
            client: RwLock::new(None),
            ready: watch::channel(0).0,
            tools: RwLock::new(Vec::new()),
            hello: RwLock::new(None),
        });
        self.servers.insert(spec.name.clone(), entry.clone());
        self.rebuild();
        entry
    }

    /// Updates a registered server's spec in place (settings that apply without a reconnect,
    /// such as the tool timeout). Returns whether the server was there.
    pub fn update_spec(&self, spec: Arc<ServerSpec>) -> bool {
        match self.servers.get(&spec.name) {
            Some(entry) => {
                *entry.spec.write().unwrap_or_else(PoisonError::into_inner) = spec;
                true
            }
            None => false,
        }
    }

    /// Removes a server and its tools (the server was removed from the config).
    pub fn remove(&self, name: &str) {
        if let Some((_, entry)) = self.servers.remove(name) {
            if let Some(client) = entry
                .client
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                client.close(&format!("server `{name}` was removed"));
            }
            self.rebuild();
        }
    }

    /// Publishes a connected client with its handshake result and tools.
    pub fn connected(
        &self,
        entry: &ServerEntry,
        client: Arc<McpClient>,
        hello: ServerHello,
        tools: Vec<Value>,
    ) {
        *entry.hello.write().unwrap_or_else(PoisonError::into_inner) = Some(hello);
        *entry.client.write().unwrap_or_else(PoisonError::into_inner) = Some(client);
        self.set_tools(entry, tools);
        entry.ready.send_modify(|v| *v += 1);
    }

    /// Withdraws a server's client (its connection ended); its tools stay listed.
    pub fn disconnected(&self, entry: &ServerEntry, reason: &str) {
        if let Some(client) = entry
            .client
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            client.close(reason);
        }
    }

    /// Replaces a server's tool list (after `list_changed` or a reconnect).
    pub fn set_tools(&self, entry: &ServerEntry, tools: Vec<Value>) {
        let changed = {
            let mut current = entry.tools.write().unwrap_or_else(PoisonError::into_inner);
            let changed = *current != tools;
            *current = tools;
            changed
        };
        if changed {
            self.rebuild();
        }
    }

    /// A server by name.
    pub fn server(&self, name: &str) -> Option<Arc<ServerEntry>> {
        self.servers.get(name).map(|e| e.clone())
    }

    /// Every server, sorted by name.
    pub fn servers(&self) -> Vec<Arc<ServerEntry>> {
        let mut all: Vec<_> = self.servers.iter().map(|e| e.value().clone()).collect();
        all.sort_by(|a, b| a.spec().name.cmp(&b.spec().name));
        all
    }

    /// The current tool table.
    pub fn tools(&self) -> Arc<ToolTable> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Tool table changes (the new version), for `list_changed` announcements.
    pub fn subscribe(&self) -> broadcast::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Resolves a tool name: the exact exposed name, or a bare tool name that exactly one
    /// server has.
    pub fn resolve(&self, name: &str) -> Result<Arc<ToolRoute>, HubError> {
        let table = self.tools();
        if let Some(route) = table.tools.get(name) {
            return Ok(route.clone());
        }
        match naming::resolve_bare(name, table.tools.keys().map(String::as_str)) {
            naming::Resolution::Exact(n) | naming::Resolution::Unique(n) => {
                Ok(table.tools[&n].clone())
            }
            naming::Resolution::Ambiguous(candidates) => Err(HubError::Ambiguous {
                name: name.to_owned(),
                candidates,
            }),
            naming::Resolution::NotFound => Err(HubError::UnknownTool(name.to_owned())),
        }
    }

    /// Calls a tool: resolves it, prepares the arguments against its schema (strips
    /// `approved`, coerces string-encoded values), and sends it to its server.
    pub async fn call(
        &self,
        name: &str,
        arguments: Value,
        opts: &CallOptions,
    ) -> Result<Box<RawValue>, HubError> {
        let route = self.resolve(name)?;
        Self::call_route(&route, arguments, opts).await
    }

    /// Calls a tool already resolved (see [`McpHub::resolve`]): prepares the arguments against
    /// its schema and sends it to its server.
    pub async fn call_route(
        route: &ToolRoute,
        arguments: Value,
        opts: &CallOptions,
    ) -> Result<Box<RawValue>, HubError> {
        let empty = Value::Null;
        let schema = route.def.get("inputSchema").unwrap_or(&empty);
        let arguments = wrapper::prepare_arguments(schema, arguments)
            .map_err(|e| HubError::Arguments(e.to_string()))?;
        let mut opts = effective_options(opts, &route.server.spec());
        let started = std::time::Instant::now();
        let client = route
            .server
            .connected_client(opts.timeout)
            .await
            .map_err(HubError::Unavailable)?;
        // Waiting for a (re)connect comes out of the call's budget: a call never takes more
        // than its timeout in all.
        let waited = started.elapsed();
        if !waited.is_zero() {
            opts.timeout = opts
                .timeout
                .saturating_sub(waited)
                .max(Duration::from_millis(1));
            opts.max_total = opts.max_total.map(|t| t.saturating_sub(waited));
        }
        Ok(client.call_tool(&route.tool, arguments, &opts).await?)
    }

    fn rebuild(&self) {
        let _one_at_a_time = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let servers: Vec<Arc<ServerEntry>> =
            self.servers.iter().map(|e| e.value().clone()).collect();
        let mut defs: BTreeMap<(String, String), (Value, Arc<ServerEntry>)> = BTreeMap::new();
        for server in &servers {
            for tool in server.tools() {
                if let Some(name) = tool.get("name").and_then(Value::as_str) {
                    defs.insert(
                        (server.spec().name.clone(), name.to_owned()),
                        (tool.clone(), server.clone()),
                    );
                }
            }
        }
        // Names are assigned in (server, tool) order, so collisions resolve deterministically.
        let names = naming::ToolNames::build(defs.keys().cloned());
        let collisions: Vec<String> = names
            .collisions()
            .iter()
            .map(|c| {
                let line = format!(
                    "tool `{}` of server `{}` maps to `{}`, already used by `{}` of `{}`: not registered",
                    c.dropped.1, c.dropped.0, c.exposed, c.kept.1, c.kept.0
                );
                tracing::warn!("{line}");
                line
            })
            .collect();
        let mut tools = BTreeMap::new();
        for ((server_name, tool), (mut def, server)) in defs {
            let Some(exposed) = names.exposed(&server_name, &tool) else {
                continue; // lost a collision: reported above
            };
            let exposed = exposed.to_owned();
            def["name"] = Value::String(exposed.clone());
            tools.insert(
                exposed.clone(),
                Arc::new(ToolRoute {
                    name: exposed,
                    server,
                    tool,
                    def: Arc::new(def),
                }),
            );
        }
        let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ToolTable {
            tools,
            collisions,
            version,
        });
        let _ = self.changes.send(version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> Arc<ServerSpec> {
        Arc::new(ServerSpec {
            name: name.to_owned(),
            transport: TransportSpec::Stdio {
                command: "true".into(),
                args: vec![],
                env: vec![],
                cwd: None,
            },
            tool_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            roots: vec![],
            reset_timeout_on_progress: false,
        })
    }

    /// Servers that publish their tools at the same moment (20 connecting in parallel did, in
    /// the start-up benchmark) all end up in the table: no rebuild overwrites a newer one.
    #[test]
    fn tools_published_concurrently_are_all_registered() {
        const SERVERS: usize = 16;
        const TOOLS: usize = 5;
        let root = StatusNode::root("root", "supervisor");
        for round in 0..50 {
            let hub = McpHub::new();
            let barrier = Arc::new(std::sync::Barrier::new(SERVERS));
            let threads: Vec<_> = (0..SERVERS)
                .map(|i| {
                    let hub = hub.clone();
                    let barrier = barrier.clone();
                    let node = root.child(&format!("mcp:s{i}"), "mcp_server", None);
                    std::thread::spawn(move || {
                        let entry = hub.register(spec(&format!("s{i}")), node);
                        let tools = (0..TOOLS)
                            .map(|t| serde_json::json!({ "name": format!("t{t}") }))
                            .collect();
                        barrier.wait();
                        hub.set_tools(&entry, tools);
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let table = hub.tools();
            assert_eq!(
                table.tools.len(),
                SERVERS * TOOLS,
                "round {round}: {:?}",
                table.tools.keys().collect::<Vec<_>>()
            );
        }
    }
}
