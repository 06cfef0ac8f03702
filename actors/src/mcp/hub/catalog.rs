//! The servers' resources, resource templates and prompts, merged into one [`SurfaceTable`].
//!
//! Part of the hub ([`super::McpHub`]): each [`super::ServerEntry`] keeps its server's
//! [`Catalog`] as the server defines it (read by its connection actor at connect and on
//! `list_changed`, kept while it restarts, like its tools), and every change rebuilds the
//! table, an immutable snapshot that readers clone as an `Arc`. A rebuild that changes what
//! clients see of resources or of prompts is broadcast ([`SurfaceChange`]), so the MCP server
//! can send its sessions `notifications/resources/list_changed` or
//! `notifications/prompts/list_changed`.
//!
//! Naming: prompts are `<server>__<prompt>` by the tools' rules ([`naming::ToolNames`]:
//! sanitised, bounded, collisions reported and the later one dropped), and a bare prompt name
//! that one server has resolves to it. Resources and templates keep their URI when one server
//! offers it, and take the explicit form `revka://<server>/<uri>` ([`super::uri`]) when several
//! do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use revka_mcp::naming;
use serde_json::Value;
use tokio::sync::broadcast;

use super::ServerEntry;
use super::uri;

/// What a server offers besides tools, as it defines it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// Its `resources/list`, every page.
    pub resources: Vec<Value>,
    /// Its `resources/templates/list`, every page.
    pub templates: Vec<Value>,
    /// Its `prompts/list`, every page.
    pub prompts: Vec<Value>,
}

/// Which part of a catalog a server re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogPart {
    /// Resources and resource templates (`notifications/resources/list_changed`).
    Resources,
    /// Prompts (`notifications/prompts/list_changed`).
    Prompts,
}

/// What changed in the table, for list_changed announcements.
pub type SurfaceChange = CatalogPart;

/// A resource or resource template as clients see it, and where it goes.
#[derive(Debug, Clone)]
pub struct ResourceRoute {
    /// The URI (or `uriTemplate`) clients see: the server's own, or `revka://<server>/<own>`.
    pub exposed: String,
    /// The server that offers it.
    pub server: Arc<ServerEntry>,
    /// The server's own URI (or `uriTemplate`).
    pub original: String,
    /// The definition clients see (the server's, with the URI replaced).
    pub def: Arc<Value>,
}

/// A prompt as clients see it, and where it goes.
#[derive(Debug, Clone)]
pub struct PromptRoute {
    /// The exposed name (`<server>__<prompt>`).
    pub name: String,
    /// The server that offers it.
    pub server: Arc<ServerEntry>,
    /// The prompt's own name on that server.
    pub prompt: String,
    /// The definition clients see (the server's, with `name` replaced).
    pub def: Arc<Value>,
}

/// An immutable snapshot of every server's resources, templates and prompts.
#[derive(Debug, Default)]
pub struct SurfaceTable {
    /// Resources, by server name, then in the server's order.
    pub resources: Vec<Arc<ResourceRoute>>,
    /// Resource templates, in the same order.
    pub templates: Vec<Arc<ResourceRoute>>,
    /// Prompts by exposed name.
    pub prompts: BTreeMap<String, Arc<PromptRoute>>,
    /// Prompt name collisions found while building it, as human-readable lines.
    pub collisions: Vec<String>,
    /// Resources by exposed URI (an index into `resources`).
    by_uri: HashMap<String, usize>,
}

impl SurfaceTable {
    /// The resource clients see as `exposed`, if any.
    pub fn resource(&self, exposed: &str) -> Option<&Arc<ResourceRoute>> {
        self.by_uri.get(exposed).map(|&i| &self.resources[i])
    }

    /// The template clients see as `exposed`, if any.
    pub fn template(&self, exposed: &str) -> Option<&Arc<ResourceRoute>> {
        self.templates.iter().find(|t| t.exposed == exposed)
    }

    /// What clients see of resources and templates, to tell whether a rebuild changed it.
    fn resources_view(&self) -> Vec<(&str, &Value)> {
        self.resources
            .iter()
            .chain(&self.templates)
            .map(|r| (r.exposed.as_str(), &*r.def))
            .collect()
    }

    /// What clients see of prompts.
    fn prompts_view(&self) -> Vec<(&str, &Value)> {
        self.prompts
            .values()
            .map(|p| (p.name.as_str(), &*p.def))
            .collect()
    }
}

/// The hub's table and its change channel.
#[derive(Debug)]
pub(super) struct Surface {
    table: RwLock<Arc<SurfaceTable>>,
    /// Held for a whole rebuild, so concurrent rebuilds cannot publish an older table last.
    rebuilding: Mutex<()>,
    changes: broadcast::Sender<SurfaceChange>,
}

impl Default for Surface {
    fn default() -> Self {
        Self {
            table: RwLock::new(Arc::default()),
            rebuilding: Mutex::new(()),
            changes: broadcast::channel(16).0,
        }
    }
}

impl Surface {
    /// The current table.
    pub(super) fn table(&self) -> Arc<SurfaceTable> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes of the table.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<SurfaceChange> {
        self.changes.subscribe()
    }

    /// Rebuilds the table from `servers` (sorted by name) and announces what changed.
    pub(super) fn rebuild(&self, servers: &[Arc<ServerEntry>]) {
        let _one_at_a_time = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let table = build(servers);
        let old = self.table();
        let resources_changed = old.resources_view() != table.resources_view();
        let prompts_changed = old.prompts_view() != table.prompts_view();
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
        if resources_changed {
            let _ = self.changes.send(CatalogPart::Resources);
        }
        if prompts_changed {
            let _ = self.changes.send(CatalogPart::Prompts);
        }
    }
}

/// Builds the table of `servers` (sorted by name).
fn build(servers: &[Arc<ServerEntry>]) -> SurfaceTable {
    let catalogs: Vec<(String, Arc<ServerEntry>, Catalog)> = servers
        .iter()
        .map(|s| (s.spec().name.clone(), s.clone(), s.catalog()))
        .collect();
    let resources = routes(&catalogs, |c| &c.resources, "uri");
    let templates = routes(&catalogs, |c| &c.templates, "uriTemplate");
    let by_uri = resources
        .iter()
        .enumerate()
        .map(|(i, r)| (r.exposed.clone(), i))
        .collect();

    let mut defs: BTreeMap<(String, String), (Value, Arc<ServerEntry>)> = BTreeMap::new();
    for (name, server, catalog) in &catalogs {
        for prompt in &catalog.prompts {
            if let Some(own) = prompt.get("name").and_then(Value::as_str) {
                defs.entry((name.clone(), own.to_owned()))
                    .or_insert_with(|| (prompt.clone(), server.clone()));
            }
        }
    }
    let names = naming::ToolNames::build(defs.keys().cloned());
    let collisions = names
        .collisions()
        .iter()
        .map(|c| {
            let line = format!(
                "prompt `{}` of server `{}` maps to `{}`, already used by `{}` of `{}`: not registered",
                c.dropped.1, c.dropped.0, c.exposed, c.kept.1, c.kept.0
            );
            tracing::warn!("{line}");
            line
        })
        .collect();
    let mut prompts = BTreeMap::new();
    for ((server_name, prompt), (mut def, server)) in defs {
        let Some(exposed) = names.exposed(&server_name, &prompt) else {
            continue; // lost a collision: reported above
        };
        let exposed = exposed.to_owned();
        def["name"] = Value::String(exposed.clone());
        prompts.insert(
            exposed.clone(),
            Arc::new(PromptRoute {
                name: exposed,
                server,
                prompt,
                def: Arc::new(def),
            }),
        );
    }
    SurfaceTable {
        resources,
        templates,
        prompts,
        collisions,
        by_uri,
    }
}

/// The routes of one kind of resource entry (`key` names its URI field): a URI offered by one
/// server keeps it, one offered by several takes the explicit form on each. A server listing
/// the same URI twice keeps the first.
fn routes(
    catalogs: &[(String, Arc<ServerEntry>, Catalog)],
    list: impl Fn(&Catalog) -> &Vec<Value>,
    key: &str,
) -> Vec<Arc<ResourceRoute>> {
    let mut owners: HashMap<&str, usize> = HashMap::new();
    let mut entries = Vec::new();
    for (name, server, catalog) in catalogs {
        let mut seen = std::collections::HashSet::new();
        for def in list(catalog) {
            let Some(own) = def.get(key).and_then(Value::as_str) else {
                continue;
            };
            if !seen.insert(own) {
                continue;
            }
            *owners.entry(own).or_default() += 1;
            entries.push((name, server, own, def));
        }
    }
    entries
        .into_iter()
        .map(|(name, server, own, def)| {
            let exposed = if owners[own] > 1 {
                uri::explicit(name, own)
            } else {
                own.to_owned()
            };
            let mut def = def.clone();
            def[key] = Value::String(exposed.clone());
            Arc::new(ResourceRoute {
                exposed,
                server: server.clone(),
                original: own.to_owned(),
                def: Arc::new(def),
            })
        })
        .collect()
}

/// Whether a client token's tool scope lets a session see the resources of `server`: when one
/// of its patterns could match a tool of that server (`fs__*`, `fs__read_file`, `f*`, `*`).
pub fn scope_names_server(patterns: &[String], server: &str) -> bool {
    let prefix = naming::exposed_name(server, "");
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(start) => start.starts_with(&prefix) || prefix.starts_with(start),
        None => p.starts_with(&prefix),
    })
}
