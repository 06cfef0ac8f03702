//! Routing a session's resource, prompt and completion requests to the server that owns what
//! they name, and sending them with the same guarantees as a tool call.
//!
//! Part of the hub ([`super::McpHub`]). A request goes to a server through
//! [`super::ServerEntry::connected_client`]: it fails fast while the server is backing off,
//! failed or stopped, waits for a connect in progress within its timeout, and is bounded by the
//! server's `tool_timeout` (waiting included), as tool calls are.
//!
//! How a resource URI is routed ([`McpHub::route_uri`]), first match wins:
//! 1. a URI a list shows (its exposed form, see [`super::uri`]);
//! 2. the explicit form `revka://<server>/<uri>` of a registered server;
//! 3. a URI that the templates of exactly one server match;
//! 4. the only server that declares `resources`, if exactly one does;
//! 5. otherwise `-32002 Resource not found`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use revka_mcp::client::{CallError, CallOptions};
use revka_mcp::naming;
use serde_json::Value;
use serde_json::value::RawValue;

use super::catalog::{PromptRoute, SurfaceTable};
use super::{McpHub, ServerEntry, ServerUnavailable, uri};

/// The MCP code of an unknown resource.
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// Why a resource, prompt or completion request was not answered by the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SurfaceError {
    /// No prompt of that name (nor a unique bare name).
    #[error("unknown prompt: {0}")]
    UnknownPrompt(String),
    /// The bare name is a prompt of several servers.
    #[error("prompt name `{name}` is ambiguous: {}", candidates.join(", "))]
    AmbiguousPrompt {
        /// The requested name.
        name: String,
        /// Full names it could mean.
        candidates: Vec<String>,
    },
    /// No server offers the resource.
    #[error("Resource not found: {0}")]
    ResourceNotFound(String),
    /// The templates of several servers match the URI.
    #[error(
        "Resource not found: {uri} matches resource templates of several servers ({}); read it \
         as revka://<server>/{uri}", servers.join(", ")
    )]
    AmbiguousResource {
        /// The URI.
        uri: String,
        /// The servers whose templates match.
        servers: Vec<String>,
    },
    /// A subscription past the bounds of the subscription table.
    #[error("too many subscriptions: {0}")]
    TooManySubscriptions(String),
    /// The server cannot take requests now (restarting, failed, stopped).
    #[error(transparent)]
    Unavailable(#[from] ServerUnavailable),
    /// The request reached the server and failed (its error, a timeout, the connection).
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Where a resource URI goes.
#[derive(Debug, Clone)]
pub struct UriRoute {
    /// The server.
    pub server: Arc<ServerEntry>,
    /// The URI in the server's own terms.
    pub original: String,
    /// Whether clients see the server's URIs in the explicit form here: the URIs in its
    /// answer are shown so too.
    pub explicit: bool,
}

impl UriRoute {
    /// `uri` as clients see it on this route.
    pub fn exposed(&self, uri: &str) -> String {
        if self.explicit {
            uri::explicit(&self.server.spec().name, uri)
        } else {
            uri.to_owned()
        }
    }
}

impl McpHub {
    /// Resolves a prompt name: the exact exposed name, or a bare name one server has.
    pub fn route_prompt(&self, name: &str) -> Result<Arc<PromptRoute>, SurfaceError> {
        self.route_visible_prompt(name, |_| true)
    }

    /// [`Self::route_prompt`] among the prompts whose exposed names `visible` lets through (a
    /// session's scope): a hidden prompt is unknown, and a bare name resolves, or is
    /// ambiguous, among the visible ones only, so no answer names a hidden prompt.
    pub fn route_visible_prompt(
        &self,
        name: &str,
        visible: impl Fn(&str) -> bool,
    ) -> Result<Arc<PromptRoute>, SurfaceError> {
        let table = self.surface();
        if let Some(route) = table.prompts.get(name)
            && visible(name)
        {
            return Ok(route.clone());
        }
        let names = table.prompts.keys().map(String::as_str);
        match naming::resolve_bare(name, names.filter(|n| visible(n))) {
            naming::Resolution::Exact(n) | naming::Resolution::Unique(n) => {
                Ok(table.prompts[&n].clone())
            }
            naming::Resolution::Ambiguous(candidates) => Err(SurfaceError::AmbiguousPrompt {
                name: name.to_owned(),
                candidates,
            }),
            naming::Resolution::NotFound => Err(SurfaceError::UnknownPrompt(name.to_owned())),
        }
    }

    /// Where a resource URI goes (the module docs list the rules, in order).
    pub fn route_uri(&self, requested: &str) -> Result<UriRoute, SurfaceError> {
        self.route_uri_among(requested, &|_| true)
    }

    /// [`McpHub::route_uri`] for a session that sees only the servers `visible` admits: every
    /// rule counts only those (a hidden server's URI is routed as if it were listed nowhere),
    /// so a hidden server is never named nor chosen, and what it serves is, to the session,
    /// exactly as unknown as a URI nobody serves.
    pub fn route_uri_among(
        &self,
        requested: &str,
        visible: &dyn Fn(&ServerEntry) -> bool,
    ) -> Result<UriRoute, SurfaceError> {
        let table = self.surface();
        if let Some(route) = table.resource(requested).filter(|r| visible(&r.server)) {
            return Ok(UriRoute {
                server: route.server.clone(),
                original: route.original.clone(),
                explicit: route.exposed != route.original,
            });
        }
        if let Some(route) = self
            .explicit_route(requested)
            .filter(|r| visible(&r.server))
        {
            return Ok(route);
        }
        self.route_by_templates(&table, requested, visible)
    }

    /// Where a completion's `ref/resource` goes: a template (or URI) as a list shows it, its
    /// explicit form, or the templates that match it. `original` is the template in the
    /// server's terms.
    pub fn route_template(&self, requested: &str) -> Result<UriRoute, SurfaceError> {
        self.route_template_among(requested, &|_| true)
    }

    /// [`McpHub::route_template`] among the servers `visible` admits (see
    /// [`McpHub::route_uri_among`]).
    pub fn route_template_among(
        &self,
        requested: &str,
        visible: &dyn Fn(&ServerEntry) -> bool,
    ) -> Result<UriRoute, SurfaceError> {
        let table = self.surface();
        if let Some(route) = table.template(requested).filter(|r| visible(&r.server)) {
            return Ok(UriRoute {
                server: route.server.clone(),
                original: route.original.clone(),
                explicit: route.exposed != route.original,
            });
        }
        self.route_uri_among(requested, visible)
    }

    /// `revka://<server>/<uri>` of a registered server.
    fn explicit_route(&self, requested: &str) -> Option<UriRoute> {
        let (name, original) = uri::split_explicit(requested)?;
        let server = self.server(name)?;
        Some(UriRoute {
            server,
            original: original.to_owned(),
            explicit: true,
        })
    }

    /// Rules 3 to 5 of the module docs.
    fn route_by_templates(
        &self,
        table: &SurfaceTable,
        requested: &str,
        visible: &dyn Fn(&ServerEntry) -> bool,
    ) -> Result<UriRoute, SurfaceError> {
        let mut matching: Vec<Arc<ServerEntry>> = Vec::new();
        for template in &table.templates {
            if visible(&template.server)
                && uri::template_matches(&template.original, requested)
                && !matching.iter().any(|s| Arc::ptr_eq(s, &template.server))
            {
                matching.push(template.server.clone());
            }
        }
        match matching.len() {
            1 => {
                return Ok(UriRoute {
                    server: matching.remove(0),
                    original: requested.to_owned(),
                    explicit: false,
                });
            }
            0 => {}
            _ => {
                return Err(SurfaceError::AmbiguousResource {
                    uri: requested.to_owned(),
                    servers: matching.iter().map(|s| s.spec().name.clone()).collect(),
                });
            }
        }
        let mut with_resources = self
            .servers()
            .into_iter()
            .filter(|s| s.declares("resources"));
        // Only when it is the only server of all, and one the session sees: a session that
        // sees one of several is not sent there for URIs nobody lists.
        match (with_resources.next(), with_resources.next()) {
            (Some(server), None) if visible(&server) => Ok(UriRoute {
                server,
                original: requested.to_owned(),
                explicit: false,
            }),
            _ => Err(SurfaceError::ResourceNotFound(requested.to_owned())),
        }
    }

    /// Sends `method` with `params` to `server`, as a tool call would go: fails fast when the
    /// server is backing off, failed or stopped; waits for a connect in progress; all within
    /// the server's `tool_timeout`.
    pub async fn request(
        server: &ServerEntry,
        method: &str,
        params: Value,
    ) -> Result<Box<RawValue>, SurfaceError> {
        let timeout = server.spec().tool_timeout.min(super::MAX_CALL);
        let started = Instant::now();
        let client = server.connected_client(timeout).await?;
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        let opts = CallOptions {
            timeout: left,
            ..Default::default()
        };
        Ok(client.request(method, Some(params), &opts).await?)
    }
}
