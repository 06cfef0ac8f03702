//! The MCP hub: every configured server, its live client, and the merged tool table.
//!
//! The hub is shared state (an `Arc`), not an actor: the tool-call hot path reads it directly,
//! so a call crosses no mailbox on its way to a server. Connection actors
//! (`root/mcp_servers/mcp:<name>`) write into it: they register their server, publish a client
//! and its tools when the handshake succeeds, and withdraw the client when the connection ends.
//! A server's tools stay registered while it restarts, so clients see a stable list; calls in
//! that window fail fast with the server's state (`restarting, next attempt in 2 s`, `failed:
//! …`); once the next attempt is due, a call waits for the connect, within its timeout.
//!
//! The tool table is an immutable snapshot swapped on every change (readers clone an `Arc`);
//! each change bumps a version and is broadcast, so the MCP server can tell its sessions
//! `notifications/tools/list_changed`.
//!
//! Each server may have a [`ToolFilter`] (its config entry's `allowed_tools` / `denied_tools`),
//! set by whoever knows the config ([`McpHub::set_tool_filter`]). The table is built through
//! it: a rejected tool is never routed, listed or searched by any consumer of the table, and is
//! kept in [`ToolTable::filtered`] with the reason. Filters live beside the servers, not in
//! their [`ServerSpec`], so changing one re-filters the table without touching the connection.
//!
//! Beside tools, each server keeps its resources, resource templates and prompts ([`Catalog`]),
//! merged into a second snapshot, the [`SurfaceTable`] (`catalog`: naming and the URI scheme;
//! `uri`: the explicit form `revka://<server>/<uri>` and template matching). Requests for them
//! are routed to the owning server with the guarantees of a tool call (`routing`), and resource
//! subscriptions are shared per (server, URI) among the sessions that follow it
//! (`subscriptions`).

mod catalog;
mod routing;
mod subscriptions;
#[cfg(test)]
mod surface_tests;
pub mod uri;

pub use catalog::{
    Catalog, CatalogPart, PromptRoute, ResourceRoute, SurfaceChange, SurfaceTable,
    scope_names_server,
};
pub use routing::{RESOURCE_NOT_FOUND, SurfaceError, UriRoute};
pub use subscriptions::{MAX_SESSION_SUBSCRIPTIONS, MAX_SUBSCRIPTIONS};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use revka_mcp::client::{CallError, CallOptions, McpClient, Peer};
use revka_mcp::naming;
use revka_mcp::protocol::ServerHello;
use revka_mcp::spec::ServerSpec;
use revka_mcp::wrapper::{self, Arguments};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::status::{ActorState, StatusNode};

/// Which of a server's tools the hub registers: its config entry's `allowed_tools` and
/// `denied_tools`. Patterns name the server's own tool names (before the `<server>__` prefix);
/// a trailing `*` matches any rest (`list_*`), anything else matches exactly. The config layer
/// rejects every other glob syntax, so a pattern here is never anything else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolFilter {
    /// Only tools matching one of these are registered; `None` registers every tool.
    pub allowed: Option<Vec<String>>,
    /// Tools matching one of these are never registered; deny wins over allow.
    pub denied: Vec<String>,
}

impl ToolFilter {
    /// Whether the filter lets every tool through (nothing configured).
    pub fn is_open(&self) -> bool {
        self.allowed.is_none() && self.denied.is_empty()
    }

    /// Why `server` may not register `tool`, or `None` when it may.
    pub fn rejects(&self, server: &str, tool: &str) -> Option<String> {
        if let Some(pattern) = self.denied.iter().find(|p| pattern_matches(p, tool)) {
            return Some(format!(
                "denied by denied_tools of server `{server}` (matches `{pattern}`)"
            ));
        }
        match &self.allowed {
            Some(allowed) if !allowed.iter().any(|p| pattern_matches(p, tool)) => {
                Some(format!("not in allowed_tools of server `{server}`"))
            }
            _ => None,
        }
    }
}

/// Whether a tool-filter pattern matches `name`: a trailing `*` is a prefix match, anything
/// else an exact one (case-sensitive, like tool names).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Why a tool pattern (of `allowed_tools`, `denied_tools` or a client token's tool scope) is
/// not one [`pattern_matches`] understands. The messages are shown as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The empty string.
    #[error("must not be empty (use \"*\" to match every tool)")]
    Empty,
    /// Leading or trailing whitespace, or a control character.
    #[error("invalid pattern {0:?}: no leading or trailing spaces, no control characters")]
    Spaces(String),
    /// A `*` anywhere but once at the end.
    #[error(
        "invalid pattern {0:?}: `*` is only allowed once, at the end (a prefix match, e.g. \
         \"read_*\")"
    )]
    Star(String),
}

/// Checks that `pattern` is a tool name or a prefix ending in `*`: the only syntax
/// [`pattern_matches`] has, so that no other glob is silently taken literally.
pub fn check_pattern(pattern: &str) -> Result<(), PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    if pattern.trim() != pattern || pattern.chars().any(char::is_control) {
        return Err(PatternError::Spaces(pattern.to_owned()));
    }
    if pattern.trim_end_matches('*').contains('*') || pattern.ends_with("**") {
        return Err(PatternError::Star(pattern.to_owned()));
    }
    Ok(())
}

/// A tool a server's [`ToolFilter`] kept out of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredTool {
    /// The server that offers it.
    pub server: String,
    /// The exposed name it would have had (`<server>__<tool>`).
    pub name: String,
    /// Why it was kept out.
    pub reason: String,
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
        relay: opts.relay.clone(),
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
    /// Bumped each time the spec is updated in place, so the liveness probe takes a new ping
    /// policy at once instead of at the end of its current wait.
    updated: watch::Sender<u64>,
    tools: RwLock<Vec<Value>>,
    /// Its resources, templates and prompts (kept while it restarts, like its tools).
    catalog: RwLock<Catalog>,
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

    /// Wakes on every in-place update of the spec ([`McpHub::update_spec`]).
    pub fn spec_updates(&self) -> watch::Receiver<u64> {
        self.updated.subscribe()
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

    /// Its resources, templates and prompts as the server defines them (kept while it
    /// restarts).
    pub fn catalog(&self) -> Catalog {
        self.catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether its `initialize` declared the capability `name` (`resources`, `prompts`,
    /// `completions`, ...). False before its first handshake.
    pub fn declares(&self, name: &str) -> bool {
        self.hello
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|h| h.capabilities.get(name).is_some_and(|c| !c.is_null()))
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

    /// Why a call cannot be made right now, from the supervisor's view of the server: `None`
    /// while it is running, starting, or due to start.
    fn unavailable(&self) -> Option<ServerUnavailable> {
        let server = self.spec().name.clone();
        match self.node.state() {
            ActorState::BackingOff => {
                // An attempt that is due is being made: the state is about to be `Starting`,
                // so the caller waits for it as for any connect. (No time at all: the server
                // was stopped to restart with a failed sibling, whose delay decides.)
                match self.node.next_restart_in() {
                    Some(next) if next.is_zero() => None,
                    Some(next) => Some(ServerUnavailable::BackingOff { server, next }),
                    None => Some(ServerUnavailable::Restarting { server }),
                }
            }
            ActorState::Failed => {
                let reason = self
                    .node
                    .last_failure()
                    .unwrap_or_else(|| "gave up restarting".into());
                // A connection's failure (`McpError`) names the server already.
                let prefix = format!("server `{server}`: ");
                let reason = reason
                    .strip_prefix(&prefix)
                    .map_or(reason.clone(), str::to_owned);
                Some(ServerUnavailable::Failed { server, reason })
            }
            ActorState::Stopped | ActorState::Stopping => {
                Some(ServerUnavailable::Stopped { server })
            }
            ActorState::Starting | ActorState::Running => None,
        }
    }

    /// The live client, waiting up to `wait` for a (re)connect in progress. Fails fast when
    /// the server is backing off, failed or stopped. Waits without polling: woken by a client
    /// being published or by the supervisor changing the server's state.
    pub async fn connected_client(
        &self,
        wait: Duration,
    ) -> Result<Arc<McpClient>, ServerUnavailable> {
        let deadline = Instant::now() + wait;
        let mut ready = self.ready.subscribe();
        let mut state = self.node.state_changes();
        loop {
            if let Some(client) = self.client()
                && client.closed_reason().is_none()
            {
                return Ok(client);
            }
            if let Some(reason) = self.unavailable() {
                return Err(reason);
            }
            if Instant::now() >= deadline {
                return Err(ServerUnavailable::NotConnected {
                    server: self.spec().name.clone(),
                });
            }
            let woken = async {
                tokio::select! {
                    _ = ready.changed() => {}
                    _ = state.changed() => {}
                }
            };
            let _ = tokio::time::timeout_at(deadline, woken).await;
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
    /// What preparing arguments under its `inputSchema` can do.
    pub schema_traits: wrapper::SchemaTraits,
}

impl ToolRoute {
    /// Prepares `arguments` for this tool under its `inputSchema`: strips an `approved` it
    /// does not declare, coerces string-encoded values.
    pub fn prepare(&self, arguments: Arguments) -> Result<Arguments, HubError> {
        wrapper::prepare_with(input_schema(&self.def), self.schema_traits, arguments)
            .map_err(|e| HubError::Arguments(e.to_string()))
    }
}

/// An immutable snapshot of every external tool, sorted by exposed name.
#[derive(Debug, Default)]
pub struct ToolTable {
    /// Tools by exposed name (shared: a call takes its route without copying it).
    pub tools: BTreeMap<String, Arc<ToolRoute>>,
    /// Name collisions found while building it, as human-readable lines.
    pub collisions: Vec<String>,
    /// Tools a server's [`ToolFilter`] kept out, sorted by server, then tool.
    pub filtered: Vec<FilteredTool>,
    /// The table's version.
    pub version: u64,
}

/// Why a server cannot take calls now ([`ServerEntry::connected_client`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerUnavailable {
    /// The server is waiting out its restart backoff.
    #[error("server `{server}` is restarting, next attempt in {} s", next.as_secs_f64().ceil() as u64)]
    BackingOff {
        /// The server.
        server: String,
        /// How long until its next attempt.
        next: Duration,
    },
    /// The server is restarting, with no attempt scheduled yet.
    #[error("server `{server}` is restarting")]
    Restarting {
        /// The server.
        server: String,
    },
    /// The server's supervisor gave up restarting it.
    #[error("server `{server}` failed: {reason}")]
    Failed {
        /// The server.
        server: String,
        /// Its last failure, without the server's name.
        reason: String,
    },
    /// The server is stopped (or stopping).
    #[error("server `{server}` is stopped")]
    Stopped {
        /// The server.
        server: String,
    },
    /// The server did not connect within the wait.
    #[error("server `{server}` is not connected yet")]
    NotConnected {
        /// The server.
        server: String,
    },
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
    #[error(transparent)]
    Unavailable(#[from] ServerUnavailable),
    /// The call reached the server and failed.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// The registry of external servers and their tools.
#[derive(Debug)]
pub struct McpHub {
    servers: DashMap<String, Arc<ServerEntry>>,
    /// Tool filters by server name (only servers that have one); they outlive a server's
    /// re-registration, so a restart keeps filtering.
    filters: RwLock<BTreeMap<String, Arc<ToolFilter>>>,
    table: RwLock<Arc<ToolTable>>,
    /// Held for a whole rebuild (read every server's tools, write the table), so rebuilds by
    /// servers publishing at the same moment cannot overwrite a newer table with an older one.
    rebuilding: Mutex<()>,
    version: AtomicU64,
    changes: broadcast::Sender<u64>,
    /// Bumped each time a server is registered, for callers waiting for a server that is
    /// being started (a session's operator) to appear.
    registered: watch::Sender<u64>,
    /// Told of each new tool list a server publishes, if the hub was created with one.
    tools_listener: Option<ToolsListener>,
    /// Where what servers send that no call relates to goes ([`McpHub::set_peer`]).
    peer: std::sync::OnceLock<PeerSlot>,
    /// The log level asked of the servers (`logging/setLevel`).
    log_level: crate::mcp::log_level::UpstreamLogLevel,
    /// The merged resources, templates and prompts.
    surface: catalog::Surface,
    /// Which sessions follow which resources.
    subscriptions: subscriptions::Subscriptions,
}

/// The hub's peer, which is not `Debug`.
struct PeerSlot(Arc<dyn Peer>);

impl std::fmt::Debug for PeerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Peer")
    }
}

/// Told of a server's tool list, as the server defines it, each time it changes: when the
/// server connects with tools it did not have, and on its `list_changed`. Called on the
/// connection actor's task, so it must not block.
#[derive(Clone)]
pub struct ToolsListener(Arc<ToolsFn>);

/// What a [`ToolsListener`] calls: the server's name, then its tools.
type ToolsFn = dyn Fn(&str, &[Value]) + Send + Sync;

impl ToolsListener {
    /// A listener calling `f` with the server's name and its tools.
    pub fn new(f: impl Fn(&str, &[Value]) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for ToolsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToolsListener")
    }
}

impl Default for McpHub {
    fn default() -> Self {
        Self {
            servers: DashMap::new(),
            filters: RwLock::new(BTreeMap::new()),
            table: RwLock::new(Arc::new(ToolTable::default())),
            rebuilding: Mutex::new(()),
            version: AtomicU64::new(0),
            changes: broadcast::channel(16).0,
            registered: watch::channel(0).0,
            tools_listener: None,
            peer: std::sync::OnceLock::new(),
            log_level: Default::default(),
            surface: catalog::Surface::default(),
            subscriptions: subscriptions::Subscriptions::default(),
        }
    }
}

impl McpHub {
    /// An empty hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An empty hub that tells `listener` of every new tool list its servers publish.
    pub fn with_tools_listener(listener: ToolsListener) -> Arc<Self> {
        Arc::new(Self {
            tools_listener: Some(listener),
            ..Self::default()
        })
    }

    /// Sets where the servers' requests and notifications that no call relates to go: every
    /// connection made after this takes it. Set once (the daemon does, before starting the
    /// servers); later calls are ignored.
    pub fn set_peer(&self, peer: Arc<dyn Peer>) {
        let _ = self.peer.set(PeerSlot(peer));
    }

    /// The log level asked of the servers: sessions' wishes go here.
    pub fn log_level(&self) -> &crate::mcp::log_level::UpstreamLogLevel {
        &self.log_level
    }

    /// The peer connections take ([`McpHub::set_peer`]).
    pub fn peer(&self) -> Option<Arc<dyn Peer>> {
        self.peer.get().map(|slot| slot.0.clone())
    }

    /// Registers (or replaces, when its spec changed) a server. Called by its connection actor.
    pub fn register(&self, spec: Arc<ServerSpec>, node: StatusNode) -> Arc<ServerEntry> {
        if let Some(existing) = self.servers.get(&spec.name)
            && *existing.spec() == *spec
            && existing.node.path() == node.path()
        {
            return existing.clone();
        }
        let entry = Arc::new(ServerEntry {
            spec: RwLock::new(spec.clone()),
            node,
            client: RwLock::new(None),
            ready: watch::channel(0).0,
            updated: watch::channel(0).0,
            tools: RwLock::new(Vec::new()),
            catalog: RwLock::new(Catalog::default()),
            hello: RwLock::new(None),
        });
        self.servers.insert(spec.name.clone(), entry.clone());
        self.rebuild();
        self.rebuild_surface();
        self.registered.send_modify(|v| *v += 1);
        entry
    }

    /// Wakes each time a server is registered (see [`McpHub::register`]).
    pub fn registrations(&self) -> watch::Receiver<u64> {
        self.registered.subscribe()
    }

    /// Updates a registered server's spec in place (settings that apply without a reconnect,
    /// such as the tool timeout or the ping policy). Returns whether the server was there.
    pub fn update_spec(&self, spec: Arc<ServerSpec>) -> bool {
        match self.servers.get(&spec.name) {
            Some(entry) => {
                *entry.spec.write().unwrap_or_else(PoisonError::into_inner) = spec;
                entry.updated.send_modify(|v| *v += 1);
                true
            }
            None => false,
        }
    }

    /// Sets the tool filter of server `name` (registered or not yet), and rebuilds the table
    /// when it changed: tools it now rejects leave the table at once, tools it now lets through
    /// join it, without a reconnect. An open filter removes the server's filter. Returns
    /// whether anything changed.
    pub fn set_tool_filter(&self, name: &str, filter: ToolFilter) -> bool {
        let changed = {
            let mut filters = self.filters.write().unwrap_or_else(PoisonError::into_inner);
            let current = filters.get(name).map(|f| &**f);
            if current.unwrap_or(&ToolFilter::default()) == &filter {
                false
            } else {
                if filter.is_open() {
                    filters.remove(name);
                } else {
                    filters.insert(name.to_owned(), Arc::new(filter));
                }
                true
            }
        };
        if changed {
            self.rebuild();
        }
        changed
    }

    /// The tool filter of server `name` (open when it has none).
    pub fn tool_filter(&self, name: &str) -> ToolFilter {
        self.filters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map_or_else(ToolFilter::default, |f| (**f).clone())
    }

    /// Removes a server, its tools and its tool filter (the server was removed from the
    /// config).
    pub fn remove(&self, name: &str) {
        let removed = self.servers.remove(name);
        // After the server is gone, so that no rebuild in between publishes its filtered tools.
        self.filters
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        if let Some((_, entry)) = removed {
            if let Some(client) = entry
                .client
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                client.close(&format!("server `{name}` was removed"));
            }
            self.rebuild();
            self.rebuild_surface();
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
        *entry.client.write().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
        self.log_level.connected(entry, client);
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
        let published = {
            let mut current = entry.tools.write().unwrap_or_else(PoisonError::into_inner);
            if *current == tools {
                return;
            }
            *current = tools;
            // A copy only for a listener, which is told outside the lock.
            self.tools_listener
                .as_ref()
                .map(|l| (l.clone(), current.clone()))
        };
        if let Some((listener, tools)) = published {
            (listener.0)(&entry.spec().name, &tools);
        }
        self.rebuild();
    }

    /// Replaces a server's catalog: every part (at connect), or the part it re-read after a
    /// `list_changed`.
    pub fn set_catalog(&self, entry: &ServerEntry, catalog: Catalog, part: Option<CatalogPart>) {
        {
            let mut current = entry
                .catalog
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let next = match part {
                None => catalog,
                Some(CatalogPart::Resources) => Catalog {
                    prompts: current.prompts.clone(),
                    ..catalog
                },
                Some(CatalogPart::Prompts) => Catalog {
                    prompts: catalog.prompts,
                    ..current.clone()
                },
            };
            if *current == next {
                return;
            }
            *current = next;
        }
        self.rebuild_surface();
    }

    /// The current table of resources, templates and prompts.
    pub fn surface(&self) -> Arc<SurfaceTable> {
        self.surface.table()
    }

    /// Changes of what clients see of resources or of prompts, for `list_changed`
    /// announcements.
    pub fn surface_changes(&self) -> broadcast::Receiver<SurfaceChange> {
        self.surface.subscribe()
    }

    fn rebuild_surface(&self) {
        self.surface.rebuild(&self.servers());
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
        arguments: impl Into<Arguments>,
        opts: &CallOptions,
    ) -> Result<Box<RawValue>, HubError> {
        let route = self.resolve(name)?;
        Self::call_route(&route, arguments.into(), opts).await
    }

    /// Calls a tool already resolved (see [`McpHub::resolve`]): prepares the arguments against
    /// its schema and sends it to its server.
    pub async fn call_route(
        route: &ToolRoute,
        arguments: Arguments,
        opts: &CallOptions,
    ) -> Result<Box<RawValue>, HubError> {
        let arguments = route.prepare(arguments)?;
        let mut opts = effective_options(opts, &route.server.spec());
        let started = std::time::Instant::now();
        let client = route.server.connected_client(opts.timeout).await?;
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
        Ok(client.call_tool(&route.tool, &arguments, &opts).await?)
    }

    fn rebuild(&self) {
        let _one_at_a_time = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let servers: Vec<Arc<ServerEntry>> =
            self.servers.iter().map(|e| e.value().clone()).collect();
        let filters = self
            .filters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut defs: BTreeMap<(String, String), (Value, Arc<ServerEntry>)> = BTreeMap::new();
        let mut filtered: BTreeMap<(String, String), String> = BTreeMap::new();
        for server in &servers {
            let server_name = server.spec().name.clone();
            let filter = filters.get(&server_name);
            for tool in server.tools() {
                let Some(name) = tool.get("name").and_then(Value::as_str) else {
                    continue;
                };
                // Filtered before names are assigned: a rejected tool takes no name and
                // causes no collision.
                if let Some(reason) = filter.and_then(|f| f.rejects(&server_name, name)) {
                    tracing::debug!(server = %server_name, tool = name, %reason, "tool filtered out");
                    filtered.insert((server_name.clone(), name.to_owned()), reason);
                    continue;
                }
                defs.insert(
                    (server_name.clone(), name.to_owned()),
                    (tool.clone(), server.clone()),
                );
            }
        }
        let filtered: Vec<FilteredTool> = filtered
            .into_iter()
            .map(|((server, tool), reason)| FilteredTool {
                name: naming::exposed_name(&server, &tool),
                server,
                reason,
            })
            .collect();
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
            let schema_traits = wrapper::SchemaTraits::of(input_schema(&def));
            tools.insert(
                exposed.clone(),
                Arc::new(ToolRoute {
                    name: exposed,
                    server,
                    tool,
                    def: Arc::new(def),
                    schema_traits,
                }),
            );
        }
        let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ToolTable {
            tools,
            collisions,
            filtered,
            version,
        });
        let _ = self.changes.send(version);
    }
}

/// A tool definition's `inputSchema` (`null` if it has none).
fn input_schema(def: &Value) -> &Value {
    static NONE: Value = Value::Null;
    def.get("inputSchema").unwrap_or(&NONE)
}

#[cfg(test)]
mod tests {
    use revka_mcp::spec::{PingPolicy, TransportSpec};

    use super::*;

    pub(super) fn spec(name: &str) -> Arc<ServerSpec> {
        Arc::new(ServerSpec {
            name: name.to_owned(),
            transport: TransportSpec::Stdio {
                command: "true".into(),
                args: vec![],
                env: vec![],
                cwd: None,
            },
            tool_timeout: Duration::from_secs(1),
            ping: PingPolicy::OFF,
            handshake_timeout: Duration::from_secs(1),
            roots: vec![],
            reset_timeout_on_progress: false,
            shown: None,
            oauth: None,
        })
    }

    fn named(names: &[&str]) -> Vec<Value> {
        names
            .iter()
            .map(|n| serde_json::json!({ "name": n, "description": format!("does {n}") }))
            .collect()
    }

    fn filter(allowed: Option<&[&str]>, denied: &[&str]) -> ToolFilter {
        let owned = |list: &[&str]| list.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        ToolFilter {
            allowed: allowed.map(owned),
            denied: owned(denied),
        }
    }

    #[test]
    fn patterns_are_exact_names_or_prefixes_with_a_trailing_star() {
        for (pattern, name, want) in [
            ("read_file", "read_file", true),
            ("read_file", "read_file2", false),
            ("read_file", "Read_file", false),
            ("list_*", "list_", true),
            ("list_*", "list_dirs", true),
            ("list_*", "lis", false),
            ("list_*", "xlist_dirs", false),
            ("*", "anything", true),
            ("*", "", true),
        ] {
            assert_eq!(pattern_matches(pattern, name), want, "{pattern} vs {name}");
        }
        let f = filter(Some(&["read_*", "list_dirs"]), &["read_secret*"]);
        assert_eq!(f.rejects("fs", "read_file"), None);
        assert_eq!(f.rejects("fs", "list_dirs"), None);
        assert_eq!(
            f.rejects("fs", "write_file").as_deref(),
            Some("not in allowed_tools of server `fs`")
        );
        // Deny wins over allow.
        assert_eq!(
            f.rejects("fs", "read_secrets").as_deref(),
            Some("denied by denied_tools of server `fs` (matches `read_secret*`)")
        );
        assert!(ToolFilter::default().is_open());
        assert_eq!(ToolFilter::default().rejects("fs", "x"), None);
        // An empty allowlist lets nothing through.
        assert!(filter(Some(&[]), &[]).rejects("fs", "x").is_some());
    }

    /// Filtered tools are absent from the table (so from every consumer: listing, resolving,
    /// calling, searching), each recorded with its reason; a filter change applies to tools
    /// already published, without a reconnect, and survives the server's re-registration.
    #[test]
    fn filtered_tools_are_not_registered_and_are_recorded_with_reasons() {
        let root = StatusNode::root("root", "supervisor");
        let hub = McpHub::new();
        assert!(hub.set_tool_filter("fs", filter(Some(&["read_*", "list_*"]), &["list_secrets"])));
        assert!(!hub.set_tool_filter("fs", filter(Some(&["read_*", "list_*"]), &["list_secrets"])));
        let fs = hub.register(spec("fs"), root.child("mcp:fs", "mcp_server", None));
        let other = hub.register(spec("other"), root.child("mcp:other", "mcp_server", None));
        hub.set_tools(
            &fs,
            named(&["read_file", "list_dirs", "list_secrets", "write_file"]),
        );
        hub.set_tools(&other, named(&["write_file"]));

        let table = hub.tools();
        let names: Vec<&str> = table.tools.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["fs__list_dirs", "fs__read_file", "other__write_file"]
        );
        let filtered = |name: &str, reason: &str| FilteredTool {
            server: "fs".to_owned(),
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        assert_eq!(
            table.filtered,
            [
                filtered(
                    "fs__list_secrets",
                    "denied by denied_tools of server `fs` (matches `list_secrets`)"
                ),
                filtered("fs__write_file", "not in allowed_tools of server `fs`"),
            ]
        );
        assert!(table.collisions.is_empty(), "{:?}", table.collisions);
        // Not callable by its full name, and a bare name resolves to the one registered tool.
        assert!(matches!(
            hub.resolve("fs__write_file"),
            Err(HubError::UnknownTool(_))
        ));
        assert_eq!(hub.resolve("write_file").unwrap().name, "other__write_file");

        // A new filter re-filters the published tools at once, with a new table version.
        let version = table.version;
        let mut changes = hub.subscribe();
        assert!(hub.set_tool_filter("fs", filter(None, &["read_*"])));
        let table = hub.tools();
        assert!(table.version > version);
        assert_eq!(changes.try_recv().ok(), Some(table.version));
        let names: Vec<&str> = table.tools.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "fs__list_dirs",
                "fs__list_secrets",
                "fs__write_file",
                "other__write_file"
            ]
        );
        assert_eq!(table.filtered.len(), 1);
        assert_eq!(table.filtered[0].name, "fs__read_file");

        // The filter outlives a re-registration with a new spec (a restart with new settings).
        let mut changed = (*spec("fs")).clone();
        changed.tool_timeout = Duration::from_secs(9);
        changed.transport = TransportSpec::Stdio {
            command: "other".into(),
            args: vec![],
            env: vec![],
            cwd: None,
        };
        let fs = hub.register(Arc::new(changed), root.child("mcp:fs", "mcp_server", None));
        hub.set_tools(&fs, named(&["read_file", "write_file"]));
        assert_eq!(hub.tool_filter("fs"), filter(None, &["read_*"]));
        assert!(!hub.tools().tools.contains_key("fs__read_file"));

        // Opening the filter again registers everything and forgets the filter.
        assert!(hub.set_tool_filter("fs", ToolFilter::default()));
        let table = hub.tools();
        assert!(table.filtered.is_empty());
        assert!(table.tools.contains_key("fs__read_file"));
        assert!(hub.tool_filter("fs").is_open());
    }

    /// A denied tool takes no name: it cannot make another server's tool lose a collision.
    #[test]
    fn a_denied_tool_causes_no_collision() {
        let root = StatusNode::root("root", "supervisor");
        let hub = McpHub::new();
        // `f.a__echo` and `f_a__echo` both sanitise to `f_a__echo`; `f.a` sorts first.
        let dotted = hub.register(spec("f.a"), root.child("mcp:f.a", "mcp_server", None));
        let under = hub.register(spec("f_a"), root.child("mcp:f_a", "mcp_server", None));
        hub.set_tools(&dotted, named(&["echo"]));
        hub.set_tools(&under, named(&["echo"]));
        assert_eq!(hub.tools().collisions.len(), 1);
        hub.set_tool_filter("f.a", filter(None, &["echo"]));
        let table = hub.tools();
        assert!(table.collisions.is_empty(), "{:?}", table.collisions);
        assert_eq!(table.tools["f_a__echo"].server.spec().name, "f_a");
        assert_eq!(table.filtered.len(), 1);
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

    /// A call to a backing-off server fails fast with the time of the next attempt, unless that
    /// attempt is already due: then it waits for the connect like a call to a starting server.
    /// A server stopped to restart with its group has no time of its own.
    #[tokio::test]
    async fn a_backing_off_server_fails_calls_fast_unless_its_attempt_is_due() {
        let root = StatusNode::root("root", "supervisor");
        let hub = McpHub::new();
        let entry = hub.register(spec("f"), root.child("mcp:f", "mcp_server", None));
        let wait = Duration::from_millis(200);

        entry.node().record_restart(Duration::from_secs(5));
        entry.node().set_state(ActorState::BackingOff);
        let started = Instant::now();
        let err = entry.connected_client(wait).await.unwrap_err().to_string();
        assert_eq!(err, "server `f` is restarting, next attempt in 5 s");
        assert!(started.elapsed() < wait, "failed fast");

        entry.node().set_state(ActorState::Starting);
        entry.node().record_restart(Duration::ZERO);
        entry.node().set_state(ActorState::BackingOff);
        let started = Instant::now();
        let err = entry.connected_client(wait).await.unwrap_err().to_string();
        assert_eq!(
            err, "server `f` is not connected yet",
            "waited for the connect"
        );
        assert!(started.elapsed() >= wait);

        entry.node().set_state(ActorState::Starting);
        entry.node().set_state(ActorState::BackingOff);
        let err = entry.connected_client(wait).await.unwrap_err().to_string();
        assert_eq!(err, "server `f` is restarting");
    }
}
