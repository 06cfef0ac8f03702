//! The tool surface of Revka's MCP server, in tiers (seed 001):
//! - **built-in** tools implemented in the daemon ([`BuiltinTool`]): the health and agent
//!   tools, always listed ([`ToolRegistry::register`]);
//! - Revka's own tool tiers (`shell`, `file_read`, `cron_add`, … in [`builtin`], run under
//!   the security policy), also built in but *served* like external tools
//!   ([`ToolRegistry::register_served`]): deferred, searched and scoped as they are, listed in
//!   the instructions under "Revka's own tools";
//! - `tool_search` (seed 002), when deferred loading is on;
//! - every external server's `<server>__<tool>`, from the [`McpHub`], live: a server restart
//!   or `list_changed` updates them.
//!
//! With `[mcp] deferred_loading = true` (the default), a session's `tools/list` holds the
//! always-listed built-in tools, the eager subset of external tools (agent lifecycle and memory reflexes,
//! matched by name suffix), `tool_search`, and what that session has activated through
//! `tool_search`. Everything else is listed by name in the `initialize` instructions
//! (`<available-deferred-tools>`) and must be activated before it can be called. With deferred
//! loading off, every tool is listed and callable. A session whose client is another Revka
//! federating this one ([`Session::federated`]: it declared
//! `capabilities.experimental.revka.federation` in `initialize`) is served as if deferred
//! loading were off, without `tool_search`: the near Revka defers the tools on its own side.
//!
//! A session opened with a scoped client token ([`Session::scope`]) sees only the tools its
//! scope names, by the names it sees them under: built-in tools (`health`, the agent tools,
//! `shell`, `file_read`, …), external `<server>__<tool>` and the operator's
//! `revka-operator__<tool>` alike. A tool outside the scope is not listed, not named in the
//! instructions, not found by `tool_search` (`select:` of it answers `Not found`, as for an
//! unknown name, and activates nothing), and a call to it fails with exactly the unknown-tool
//! error: nothing tells the client it exists. The one exception is `tool_search` itself, which stays available to every session (it
//! only ever shows the session's in-scope tools). The scope is applied here, on every list,
//! search and resolution, so no path serves a session a tool its scope leaves out.

pub mod agents;
pub mod builtin;
mod dispatch;
pub mod health;
mod search;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use revka_actors::mcp::hub::{McpHub, ToolRoute};
use revka_actors::session::OPERATOR_SERVER;
use revka_actors::session::Session;
use revka_mcp::naming;
use revka_mcp::protocol::ProgressUpdate;
use serde_json::Value;

use crate::sidecars::SidecarCallError;

pub use search::ToolSearch;
use search::engine::{DeferredTool, SearchError};

/// Bare tool names kept eager under deferred loading (seed 002): the agent-lifecycle subset.
const EAGER_SUFFIXES: [&str; 11] = [
    "create_agent",
    "wait_for_agent",
    "send_agent_prompt",
    "get_agent_activity",
    "list_agents",
    "cancel_agent",
    "resolve_outcome",
    "get_workflow_context",
    "save_plan",
    "recall_plans",
    "compact_conversation",
];
/// The built-in tool every session keeps, whatever its scope: it only ever shows in-scope tools.
const TOOL_SEARCH: &str = "tool_search";
/// The group Revka's own served tools are listed under in the `initialize` instructions.
pub const BUILTIN_GROUP: &str = "revka";
/// Full names kept eager under deferred loading: the memory reflexes.
const EAGER_NAMES: [&str; 2] = [
    "kumiho-memory__kumiho_memory_engage",
    "kumiho-memory__kumiho_memory_reflect",
];

/// What a built-in tool gets for one call.
pub struct ToolContext {
    /// The calling session.
    pub session: Arc<Session>,
    /// The registry (for tools about tools, like `tool_search`).
    pub registry: Arc<ToolRegistry>,
    /// Reports progress (already keyed to the caller's token).
    pub progress: Arc<dyn Fn(ProgressUpdate) + Send + Sync>,
    /// Where an external server's requests and log messages about the call go (the caller's
    /// client), if anywhere.
    pub relay: Option<Arc<dyn revka_mcp::client::CallRelay>>,
}

/// A tool implemented inside the daemon.
pub trait BuiltinTool: Send + Sync + 'static {
    /// The tool's MCP definition (`name`, `description`, `inputSchema`, ...).
    fn definition(&self) -> Value;
    /// Runs the tool. `Ok` is an MCP tool result (`{content, isError?}`); `Err` becomes an
    /// error result with its text.
    fn call(
        &self,
        ctx: ToolContext,
        arguments: Value,
    ) -> BoxFuture<'static, Result<Value, BuiltinError>>;
}

/// Why a built-in tool call failed; the caller gets an error result with its text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuiltinError {
    /// The arguments are not what the tool takes (a field missing, of the wrong type or out of
    /// range); the text names the field.
    #[error("{0}")]
    Arguments(String),
    /// `tool_search`'s arguments are invalid.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The security policy refused the call; the text names the rule.
    #[error(transparent)]
    Refused(#[from] crate::security::Refusal),
    /// The tool ran and failed (a file that does not exist, a program that exited non-zero
    /// when that is an error, a host that does not answer); the text says what happened.
    #[error("{0}")]
    Failed(String),
    /// A session-manager mutation found the sidecar unavailable and could not be queued for a
    /// retry either.
    #[error("{call}; and it could not be queued: {queue}")]
    NotQueued {
        /// Why the call failed.
        call: SidecarCallError,
        /// Why the retry queue refused it.
        queue: String,
    },
}

/// A resolved tool.
pub enum Resolved {
    /// A built-in tool.
    Builtin(Arc<dyn BuiltinTool>),
    /// An external server's tool.
    External(Arc<ToolRoute>),
    /// A tool of the calling session's operator, by the operator's own name.
    Operator(String),
}

/// Why a tool name cannot be called in a session.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// No such tool.
    #[error("unknown tool: {0}")]
    Unknown(String),
    /// It exists but is deferred and not activated in this session.
    #[error("tool `{0}` is deferred: activate it first with tool_search (query \"select:{0}\")")]
    NotActivated(String),
    /// The name matches tools of several servers.
    #[error("tool name `{name}` is ambiguous: {}", candidates.join(", "))]
    Ambiguous {
        /// The name.
        name: String,
        /// What it could mean.
        candidates: Vec<String>,
    },
}

/// Every tool Revka serves.
pub struct ToolRegistry {
    hub: Arc<McpHub>,
    builtins: BTreeMap<String, Arc<dyn BuiltinTool>>,
    /// Built-in tools served like external ones (deferred, searchable, scoped): Revka's own
    /// tool tiers (`builtin`), with their definitions.
    served_builtins: BTreeMap<String, (Arc<Value>, Arc<dyn BuiltinTool>)>,
    deferred_loading: bool,
    skipped: Vec<(String, String)>,
    /// The operator's tool definitions (learned from an operator handshake).
    operator_catalog: std::sync::RwLock<Vec<Value>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry")
            .field("builtins", &self.builtins.keys().collect::<Vec<_>>())
            .field("deferred_loading", &self.deferred_loading)
            .finish_non_exhaustive()
    }
}

impl ToolRegistry {
    /// A registry over `hub`'s external tools.
    pub fn new(hub: Arc<McpHub>, deferred_loading: bool) -> Self {
        let mut registry = Self {
            hub,
            builtins: BTreeMap::new(),
            served_builtins: BTreeMap::new(),
            deferred_loading,
            skipped: Vec::new(),
            operator_catalog: std::sync::RwLock::new(Vec::new()),
        };
        if deferred_loading {
            registry.register(Arc::new(ToolSearch));
        }
        registry
    }

    /// Adds a built-in tool. A name already taken is skipped, with the reason recorded.
    pub fn register(&mut self, tool: Arc<dyn BuiltinTool>) {
        if let Some(name) = self.free_name(&tool.definition()) {
            self.builtins.insert(name, tool);
        }
    }

    /// The name of the built-in tool defined by `def`, when it has one no other built-in
    /// tool took; otherwise the reason is recorded and the tool is not registered.
    fn free_name(&mut self, def: &Value) -> Option<String> {
        let Some(name) = def.get("name").and_then(Value::as_str).map(str::to_owned) else {
            self.skipped
                .push(("(unnamed)".into(), "built-in tool without a name".into()));
            return None;
        };
        if self.builtins.contains_key(&name) || self.served_builtins.contains_key(&name) {
            self.skipped.push((
                name,
                "a built-in tool of that name is already registered".into(),
            ));
            return None;
        }
        Some(name)
    }

    /// Adds a built-in tool that is served like an external server's (group [`BUILTIN_GROUP`]):
    /// deferred behind `tool_search` under deferred loading, found by it, limited by scopes.
    /// A name already taken is skipped, with the reason recorded.
    pub fn register_served(&mut self, tool: Arc<dyn BuiltinTool>) {
        let def = tool.definition();
        if let Some(name) = self.free_name(&def) {
            self.served_builtins.insert(name, (Arc::new(def), tool));
        }
    }

    /// Records a tool that could not register, with the reason (shown in `/health`; the
    /// start-up banner counts them, so each is logged at `debug` only).
    pub fn skip(&mut self, name: &str, reason: &str) {
        tracing::debug!(tool = name, reason, "tool not registered");
        self.skipped.push((name.to_owned(), reason.to_owned()));
    }

    /// The built-in tools that could not register, with reasons (not the external ones a
    /// collision or a tool filter kept out: see [`Self::skipped`]).
    pub fn unregistered(&self) -> &[(String, String)] {
        &self.skipped
    }

    /// Tools that could not register, with reasons (including external name collisions and
    /// tools a server's `allowed_tools` / `denied_tools` kept out).
    pub fn skipped(&self) -> Vec<(String, String)> {
        let mut all = self.skipped.clone();
        let table = self.hub.tools();
        all.extend(
            table
                .collisions
                .iter()
                .map(|c| ("(external)".to_owned(), c.clone())),
        );
        all.extend(
            table
                .filtered
                .iter()
                .map(|t| (t.name.clone(), t.reason.clone())),
        );
        all
    }

    /// Whether external tools are deferred behind `tool_search`.
    pub fn deferred_loading(&self) -> bool {
        self.deferred_loading
    }

    /// The hub of external tools.
    pub fn hub(&self) -> &Arc<McpHub> {
        &self.hub
    }

    /// Whether an external tool is loaded eagerly under deferred loading.
    pub fn is_eager(name: &str) -> bool {
        EAGER_NAMES.contains(&name)
            || naming::bare_suffix(name).is_some_and(|bare| EAGER_SUFFIXES.contains(&bare))
    }

    /// Whether `session` can see (list and call) the served tool `name`: within its scope,
    /// and no deferred loading, an eager tool, or one it activated.
    pub fn visible_in(&self, session: &Session, name: &str) -> bool {
        session.in_scope(name)
            && (!self.defers_for(session) || Self::is_eager(name) || session.is_activated(name))
    }

    /// Whether external tools are deferred for `session`: under deferred loading, unless its
    /// client is a federating Revka, which defers on its own side.
    fn defers_for(&self, session: &Session) -> bool {
        self.deferred_loading && !session.federated()
    }

    /// Whether `session` may list and call the built-in tool `name`: `tool_search` whenever
    /// anything is deferred for it, the others when in its scope.
    fn builtin_in_scope(&self, session: &Session, name: &str) -> bool {
        if name == TOOL_SEARCH {
            self.defers_for(session)
        } else {
            session.in_scope(name)
        }
    }

    /// [`Self::served`] without the tools outside `session`'s scope: all that exists for it.
    fn served_in(&self, session: &Session) -> BTreeMap<String, Served> {
        let mut all = self.served();
        if session.scope().is_some() {
            all.retain(|name, _| session.in_scope(name));
        }
        all
    }

    /// Every tool served like an external one: Revka's own tool tiers (bare names), each
    /// external server's, then the operator's (named `revka-operator__<tool>`, from the
    /// catalog). Sorted by name; external names win a clash with the operator's.
    fn served(&self) -> BTreeMap<String, Served> {
        let mut all = BTreeMap::new();
        for (name, (def, tool)) in &self.served_builtins {
            all.insert(
                name.clone(),
                Served {
                    def: def.clone(),
                    group: BUILTIN_GROUP.to_owned(),
                    origin: Origin::Builtin(tool.clone()),
                },
            );
        }
        for (name, route) in &self.hub.tools().tools {
            all.insert(
                name.clone(),
                Served {
                    def: route.def.clone(),
                    group: route.server.spec().name.clone(),
                    origin: Origin::External(route.clone()),
                },
            );
        }
        for def in self
            .operator_catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let Some(tool) = def.get("name").and_then(Value::as_str) else {
                continue;
            };
            let name = naming::exposed_name(OPERATOR_SERVER, tool);
            let mut def = def.clone();
            def["name"] = Value::String(name.clone());
            all.entry(name).or_insert(Served {
                def: Arc::new(def),
                group: OPERATOR_SERVER.to_owned(),
                origin: Origin::Operator(tool.to_owned()),
            });
        }
        all
    }

    /// Replaces the operator's tool definitions (as the operator names them).
    pub fn set_operator_catalog(&self, tools: Vec<Value>) {
        let mut catalog = self
            .operator_catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *catalog != tools {
            tracing::info!(tools = tools.len(), "operator tool catalog updated");
            *catalog = tools;
        }
    }

    /// The session's `tools/list`, sorted by name.
    pub fn list(&self, session: &Session) -> Vec<Value> {
        let mut all: BTreeMap<String, Value> = self
            .builtins
            .iter()
            .filter(|(n, _)| self.builtin_in_scope(session, n))
            .map(|(n, t)| (n.clone(), t.definition()))
            .collect();
        for (name, served) in self.served() {
            if self.visible_in(session, &name) && !all.contains_key(&name) {
                all.insert(name, (*served.def).clone());
            }
        }
        all.into_values().collect()
    }

    /// Tools still deferred for this session (what `tool_search`'s keyword mode ranks), within
    /// its scope.
    pub fn deferred(&self, session: &Session) -> Vec<DeferredTool> {
        if !self.defers_for(session) {
            return Vec::new();
        }
        self.served_in(session)
            .into_iter()
            .filter(|(name, _)| !self.visible_in(session, name))
            .map(|(name, served)| DeferredTool::from_definition(name, (*served.def).clone()))
            .collect()
    }

    /// Every external and operator tool within `session`'s scope, the ones it can already see
    /// (eager or activated) too: what `tool_search` searches, so that selecting a visible one
    /// again returns its schema instead of `Not found` (the model may have lost it from its
    /// context). Its keyword mode ranks only the still-deferred ones ([`Self::visible_in`] is
    /// false). A tool outside the scope is not here, so selecting it is `Not found`.
    pub fn searchable(&self, session: &Session) -> Vec<DeferredTool> {
        self.served_in(session)
            .into_iter()
            .map(|(name, served)| DeferredTool::from_definition(name, (*served.def).clone()))
            .collect()
    }

    /// Activates `names` in `session`, leaving out those it can already see and those outside
    /// its scope; returns whether any was new (the session's tool list changed).
    pub fn activate<'a>(
        &self,
        session: &Session,
        names: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        // Collected first: `Session::activate` holds its lock while it reads the names.
        let hidden: Vec<&str> = names
            .into_iter()
            .filter(|n| session.in_scope(n) && !self.visible_in(session, n))
            .collect();
        session.activate(hidden)
    }

    /// Resolves a name for a call in `session`: a built-in, or a visible external or operator
    /// tool (exact name, or a unique bare suffix among the visible tools). Only tools within
    /// the session's scope exist for it: any other name is [`ToolError::Unknown`], never
    /// `NotActivated` or a candidate of `Ambiguous`.
    pub fn resolve(&self, session: &Session, name: &str) -> Result<Resolved, ToolError> {
        if let Some(tool) = self.builtins.get(name)
            && self.builtin_in_scope(session, name)
        {
            return Ok(Resolved::Builtin(tool.clone()));
        }
        if let Some((_, tool)) = self.served_builtins.get(name)
            && self.visible_in(session, name)
        {
            return Ok(Resolved::Builtin(tool.clone()));
        }
        // The common case, without building the whole served table: an exact external name
        // visible in this session (external names win a clash with the operator's anyway).
        if let Some(route) = self.hub.tools().tools.get(name)
            && self.visible_in(session, name)
        {
            return Ok(Resolved::External(route.clone()));
        }
        let mut served = self.served_in(session);
        let visible = served
            .keys()
            .map(String::as_str)
            .filter(|n| self.visible_in(session, n));
        match naming::resolve_bare(name, visible) {
            naming::Resolution::Exact(n) | naming::Resolution::Unique(n) => {
                match served.remove(&n).map(|s| s.origin) {
                    Some(Origin::External(route)) => Ok(Resolved::External(route)),
                    Some(Origin::Operator(tool)) => Ok(Resolved::Operator(tool)),
                    Some(Origin::Builtin(tool)) => Ok(Resolved::Builtin(tool)),
                    None => Err(ToolError::Unknown(name.to_owned())),
                }
            }
            naming::Resolution::Ambiguous(candidates) => Err(ToolError::Ambiguous {
                name: name.to_owned(),
                candidates,
            }),
            naming::Resolution::NotFound => {
                match naming::resolve_bare(name, served.keys().map(String::as_str)) {
                    naming::Resolution::Exact(n) | naming::Resolution::Unique(n) => {
                        Err(ToolError::NotActivated(n))
                    }
                    _ => Err(ToolError::Unknown(name.to_owned())),
                }
            }
        }
    }

    /// The `instructions` of `session`'s `initialize` result: seed 002's deferred-tools
    /// section, per server its own instructions then `<available-deferred-tools>` with one
    /// `name - description` line per deferred tool. `None` when there is nothing to say. A
    /// scoped session hears only of its in-scope tools, and only of the servers that offer it
    /// one.
    pub fn instructions(&self, session: &Session) -> Option<String> {
        let served = self.served_in(session);
        let own: BTreeMap<String, String> = self
            .hub
            .servers()
            .iter()
            .filter(|s| {
                session.scope().is_none() || served.values().any(|t| t.group == s.spec().name)
            })
            .filter_map(|s| {
                s.hello()
                    .and_then(|h| h.instructions)
                    .map(|i| (s.spec().name.clone(), i))
            })
            .collect();
        let mut groups: Vec<String> = own.keys().cloned().collect();
        groups.extend(served.values().map(|s| s.group.clone()));
        groups.sort();
        groups.dedup();
        let mut out = String::new();
        for group in &groups {
            let deferred: Vec<(&String, &Served)> = served
                .iter()
                .filter(|(name, s)| {
                    &s.group == group && self.defers_for(session) && !Self::is_eager(name)
                })
                .collect();
            if !own.contains_key(group) && deferred.is_empty() {
                continue;
            }
            if group == BUILTIN_GROUP {
                out.push_str("## Revka's own tools\n");
            } else {
                out.push_str(&format!("## MCP server `{group}`\n"));
            }
            if let Some(text) = own.get(group) {
                out.push_str(text.trim());
                out.push_str("\n\n");
            }
            if !deferred.is_empty() {
                out.push_str("<available-deferred-tools>\n");
                for (name, s) in deferred {
                    let description = s
                        .def
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    out.push_str(&format!("{name} - {}\n", one_line(description)));
                }
                out.push_str("</available-deferred-tools>\n\n");
            }
        }
        if out.is_empty() {
            return None;
        }
        let mut text = String::new();
        if self.defers_for(session) && served.keys().any(|n| !Self::is_eager(n)) {
            text.push_str(
                "Revka serves the tools of external MCP servers. Tools listed under \
                 <available-deferred-tools> are deferred: call `tool_search` with \
                 {\"query\": \"select:<name>[,<name>...]\"} or with keywords to load their schemas \
                 and activate them, then call them by name.\n\n",
            );
        }
        text.push_str(&out);
        Some(text.trim_end().to_owned())
    }
}

/// A tool that is not built in.
struct Served {
    def: Arc<Value>,
    /// The server it belongs to (for the instructions).
    group: String,
    origin: Origin,
}

enum Origin {
    /// One of Revka's own tools served like an external one.
    Builtin(Arc<dyn BuiltinTool>),
    External(Arc<ToolRoute>),
    /// An operator tool, by the operator's own name.
    Operator(String),
}

/// The first line of a description, at most 200 characters.
fn one_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut out: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        out.push('…');
    }
    out
}
