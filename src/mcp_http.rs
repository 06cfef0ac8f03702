//! Revka's in-process MCP server (seed 001): `root/mcp_http`, on `[mcp_server] host:port`
//! (`127.0.0.1:<ephemeral>` by default).
//!
//! Endpoints:
//! - `GET /health`: liveness, no auth.
//! - `POST /session`: mint a session (`{cwd?, label?}` → `{session_id, token, cwd}`).
//! - `DELETE /session/{id}`: end a session (Bearer token of that session).
//! - `POST /mcp`: JSON-RPC 2.0, by two paths (`standard` decides which):
//!   - seed 001's two-header flow (`Authorization: Bearer <token>` and `X-Revka-Session: <id>`);
//!   - standard Streamable HTTP: an `initialize` without a session header creates a session and
//!     answers with `Mcp-Session-Id`; later requests carry it and the client token
//!     (`client_auth`).
//!
//!   `initialize`, `ping`, `tools/list`, `logging/setLevel` (`logging`) are answered as JSON;
//!   `tools/call` as an SSE stream of progress, the upstream server's requests and log messages
//!   about the call (`relay`), one response, then `event: done`; the resources, prompts and
//!   completion of the upstream servers (`surface`) as JSON; notifications and the client's
//!   answers to relayed requests get 202. What servers send that relates to no call reaches
//!   sessions through `upstream`.
//! - `GET /mcp`: the session's server-to-client stream (`stream`), for either path.
//! - `DELETE /mcp`: end the session, for either path.
//! - `GET /session/{id}/events`: the session's progress stream (Bearer only).
//!
//! On a loopback bind every request must carry a loopback `Host`, and on any bind a present
//! `Origin` must be a loopback one (DNS rebinding protection). Bodies are capped (4 MiB on
//! `/mcp`). Connections are served by the shared serve loop ([`crate::http`]): slow clients
//! are closed after the `[http]` timeouts, and one source holds a bounded number of
//! connections. Session creation (`POST /session`, a standard `initialize`) is rate-limited per
//! source (`[sessions] create_burst`, `create_per_minute`: 429 with `Retry-After` past it), and
//! at the session cap it evicts only a session unused for the eviction floor, else answers 503
//! with `Retry-After`. Once bound, the server writes `$REVKA_HOME/mcp.json`
//! ([`crate::http::discovery`]) atomically and owner-only, and removes it on a graceful stop if it
//! still names this process.

mod call;
pub mod client_auth;
mod events;
mod guard;
mod logging;
mod peer_user;
mod relay;
mod rpc;
mod sse;
mod standard;
mod stream;
mod surface;
pub mod upstream;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use revka_actors::listener::{ListenerSpec, ServeFn};
use revka_actors::mcp::hub::ToolsListener;
use revka_actors::session::Sessions;
use revka_actors::status::rfc3339;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{McpEndpointConfig, SessionsConfig};
use crate::http::discovery::{remove_discovery, write_mcp_discovery};
use crate::http::loopback::Hosts;
use crate::http::rate::{PerSource, Rate};
use crate::telemetry::Telemetry;
use crate::tools::ToolRegistry;
use crate::tree::Services;
use client_auth::{ClientAuth, NoClientTokens};

/// The `POST /session` rate of `[sessions]`.
fn creation_rate(sessions: &SessionsConfig) -> Rate {
    Rate {
        burst: sessions.create_burst,
        per_minute: sessions.create_per_minute,
    }
}

/// The protocol version `/health` advertises (seed 001's), and the fallback of negotiation.
pub const BASE_PROTOCOL_VERSION: &str = "2024-11-05";
/// Body cap of `POST /mcp`.
pub const MAX_MCP_BODY: usize = 4 * 1024 * 1024;
/// Body cap of `POST /session`.
pub const MAX_SESSION_BODY: usize = 64 * 1024;
/// Interval of keep-alive comments on long SSE streams.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Shared state of the MCP server's handlers.
#[derive(Clone)]
pub struct McpServer {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Arc<Sessions>,
    registry: Arc<ToolRegistry>,
    started: SystemTime,
    born: Instant,
    /// Cancelled when the listener stops: long-lived streams end.
    shutdown: CancellationToken,
    keepalive: Duration,
    /// Shared by every session created without a `cwd`.
    default_cwd: Arc<std::path::Path>,
    telemetry: Telemetry,
    /// `POST /session` and standard `initialize`s per source: a flood of creations would fill
    /// the table and cost a session actor each.
    creations: PerSource,
    /// Verifies the client tokens of the standard path.
    client_auth: Arc<dyn ClientAuth>,
    /// Whether the standard path needs a client token (`[mcp_server] require_token`).
    require_token: bool,
}

/// How the standard Streamable HTTP path authenticates its clients.
#[derive(Clone)]
pub struct StandardPath {
    /// Verifies client tokens.
    pub client_auth: Arc<dyn ClientAuth>,
    /// Whether a client token is needed (`[mcp_server] require_token`).
    pub require_token: bool,
}

impl Default for StandardPath {
    /// Client tokens required, and none verifies: only the two-header flow is open.
    fn default() -> Self {
        Self {
            client_auth: Arc::new(NoClientTokens),
            require_token: true,
        }
    }
}

impl McpServer {
    /// The server over `sessions` and `registry`. `shutdown` ends long-lived streams.
    pub fn new(
        sessions: Arc<Sessions>,
        registry: Arc<ToolRegistry>,
        telemetry: Telemetry,
        shutdown: CancellationToken,
    ) -> Self {
        Self::with_standard_path(
            sessions,
            registry,
            telemetry,
            shutdown,
            StandardPath::default(),
        )
    }

    /// [`McpServer::new`], with the standard path's client authentication.
    pub fn with_standard_path(
        sessions: Arc<Sessions>,
        registry: Arc<ToolRegistry>,
        telemetry: Telemetry,
        shutdown: CancellationToken,
        standard: StandardPath,
    ) -> Self {
        // The operator tools are listed from the tools an operator publishes when it connects.
        let catalog = Arc::downgrade(&registry);
        sessions.on_operator_tools(ToolsListener::new(move |_, tools| {
            if let Some(registry) = catalog.upgrade() {
                registry.set_operator_catalog(tools.to_vec());
            }
        }));
        Self {
            inner: Arc::new(Inner {
                sessions,
                registry,
                started: SystemTime::now(),
                born: Instant::now(),
                shutdown,
                keepalive: KEEPALIVE,
                default_cwd: std::env::current_dir()
                    .unwrap_or_else(|_| PathBuf::from("/"))
                    .into(),
                telemetry,
                creations: PerSource::new(creation_rate(&SessionsConfig::default())),
                client_auth: standard.client_auth,
                require_token: standard.require_token,
            }),
        }
    }

    /// Sets the rate of `POST /session` per source.
    pub fn set_creation_rate(&self, rate: Rate) {
        self.inner.creations.set_rate(rate);
    }

    /// The HTTP routes, unguarded: serve [`McpServer::service`].
    fn router(self) -> Router {
        Router::new()
            .route("/health", get(health))
            .route(
                "/session",
                post(rpc::create_session).layer(DefaultBodyLimit::max(MAX_SESSION_BODY)),
            )
            .route("/session/{id}", axum::routing::delete(rpc::delete_session))
            .route("/session/{id}/events", get(events::session_events))
            .route(
                "/mcp",
                // `POST /mcp` never reaches the router: [`Dispatch`] sends it to its handler.
                get(stream::mcp_get)
                    .delete(standard::mcp_delete)
                    .fallback(rpc::mcp_method_not_allowed),
            )
            .fallback(guard::not_found)
            .with_state(self)
    }

    /// What the listener serves: the router behind its guard ([`guard::Guarded`]), with
    /// `POST /mcp` dispatched straight to its handler; `for_peer` makes the service of one
    /// connection from it. `hosts` is what the guard asks of `Host`.
    pub(crate) fn service(self, hosts: Hosts) -> guard::Guarded<Dispatch> {
        guard::Guarded {
            service: Dispatch {
                router: self.clone().router(),
                server: self,
                peer: None,
            },
            hosts,
        }
    }

    fn health_body(&self) -> Value {
        json!({
            "status": "ok",
            "pid": std::process::id(),
            "uptime_seconds": self.inner.born.elapsed().as_secs(),
            "started_at": rfc3339(self.inner.started),
            "protocol_version": BASE_PROTOCOL_VERSION,
        })
    }
}

/// `POST /mcp`, every tool call, goes straight to its handler; the router's per-request
/// dispatch (route lookup, boxed service clones) serves the rest.
#[derive(Clone)]
pub(crate) struct Dispatch {
    server: McpServer,
    router: Router,
    /// The client of this connection: handed to the routed handlers as axum's `ConnectInfo`
    /// (`POST /session` limits creations per source), and to `POST /mcp` as is (a standard
    /// `initialize` is limited the same way; an extension would cost allocations per request).
    peer: Option<SocketAddr>,
}

impl guard::Guarded<Dispatch> {
    /// The service of a connection from `peer`.
    pub(crate) fn for_peer(&self, peer: SocketAddr) -> Self {
        let mut service = self.clone();
        service.service.peer = Some(peer);
        service
    }
}

type BoxedAnswer = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<axum::response::Response, Infallible>> + Send>,
>;

impl tower_service::Service<axum::extract::Request> for Dispatch {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future =
        futures::future::Either<BoxedAnswer, axum::routing::future::RouteFuture<Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        if request.method() == axum::http::Method::POST && request.uri().path() == "/mcp" {
            let server = self.server.clone();
            let peer = self.peer;
            futures::future::Either::Left(Box::pin(async move {
                Ok(rpc::mcp_post(server, request, peer).await)
            }))
        } else {
            let mut request = request;
            if let Some(peer) = self.peer {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
            }
            futures::future::Either::Right(self.router.call(request))
        }
    }
}

async fn health(State(server): State<McpServer>) -> axum::Json<Value> {
    let mut body = server.health_body();
    let skipped: Vec<Value> = server
        .inner
        .registry
        .skipped()
        .into_iter()
        .map(|(tool, reason)| json!({ "tool": tool, "reason": reason }))
        .collect();
    if !skipped.is_empty() {
        body["skipped_tools"] = Value::Array(skipped);
    }
    axum::Json(body)
}

/// The listener spec of `root/mcp_http`: binds `[mcp_server] host:port` (`127.0.0.1:0` by
/// default) and the owner-only Unix socket `$REVKA_HOME/mcp.sock` ([`crate::http::unix`]; a
/// socket that cannot be bound is logged and done without), writes the discovery file naming
/// both into `$REVKA_HOME`, publishes the bound address on `services.mcp_bound`, and serves the
/// same service on both (on the socket, held to the loopback `Host` checks whatever the bind).
/// `Err` if the configured host is not an address (config validation refuses that first).
pub fn listener(services: &Services) -> anyhow::Result<ListenerSpec> {
    let (sessions, registry) = (services.sessions.clone(), services.tools.clone());
    let telemetry = services.telemetry.clone();
    let home = services.home.as_path();
    let bound = services.mcp_bound.clone();
    let config = services.config.clone();
    // `[mcp_server]` needs a restart to change (the running values stay until then).
    let endpoint: McpEndpointConfig = config.get().mcp_server.clone();
    let addr = endpoint
        .bind_addr()
        .map_err(|e| anyhow::anyhow!("mcp_server.host: {e}"))?;
    let hosts = if addr.ip().is_loopback() {
        Hosts::Loopback
    } else {
        Hosts::Any
    };
    let standard = StandardPath {
        client_auth: services.tokens.clone(),
        require_token: endpoint.require_token,
    };
    // Bound by `on_bound`, which runs just before `serve`, and taken by it.
    let unix: Arc<std::sync::Mutex<Option<std::os::unix::net::UnixListener>>> = Arc::default();
    // The socket's file, removed on a graceful stop.
    let unix_file: Arc<std::sync::Mutex<Option<crate::http::unix::SocketFile>>> = Arc::default();
    let unix_taken = unix.clone();
    let serve: ServeFn = Arc::new(move |listener, stop| {
        let server = McpServer::with_standard_path(
            sessions.clone(),
            registry.clone(),
            telemetry.clone(),
            stop.clone(),
            standard.clone(),
        );
        // `[sessions]` needs a restart to change (the running values stay until then).
        server.set_creation_rate(creation_rate(&config.get().sessions));
        let announcer = events::announce_tool_changes(server.clone(), stop.clone());
        let config = config.clone();
        let local = unix_taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        Box::pin(async move {
            let task = tokio::spawn(announcer);
            let limits = move || crate::http::Limits::from(&config.get().http);
            let local = local.map(|socket| {
                let service = server.clone().service(Hosts::Loopback);
                let serve = tokio::net::UnixListener::from_std(socket).map(|socket| {
                    crate::http::serve(
                        socket,
                        limits.clone(),
                        move |peer| service.for_peer(peer),
                        stop.clone(),
                    )
                });
                if let Err(e) = &serve {
                    tracing::warn!(error = %e, "cannot serve the MCP socket; TCP only");
                }
                serve.ok()
            });
            let service = server.service(hosts);
            let tcp =
                crate::http::serve(listener, limits, move |peer| service.for_peer(peer), stop);
            let result = match local.flatten() {
                Some(local) => {
                    let (tcp, local) = tokio::join!(tcp, local);
                    tcp.and(local)
                }
                None => tcp.await,
            };
            task.abort();
            result
        })
    });
    let write_home = home.to_owned();
    let remove_home = home.to_owned();
    let socket_path = home.join(crate::http::unix::SOCKET_FILE);
    let bound_file = unix_file.clone();
    Ok(ListenerSpec {
        addr,
        serve,
        on_bound: Some(Arc::new(move |addr| {
            let socket = match crate::http::unix::bind_private(&socket_path) {
                Ok((socket, file)) => {
                    let path = file.path().to_owned();
                    *unix
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(socket);
                    *bound_file
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(file);
                    Some(path)
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %socket_path.display(), "cannot bind the MCP socket; serving TCP only");
                    None
                }
            };
            write_mcp_discovery(
                &write_home,
                &format!("http://{addr}/mcp"),
                socket.as_deref(),
            )
            .map_err(|e| format!("cannot write the discovery file: {e}"))
        })),
        on_stop: Some(Arc::new(move || {
            remove_discovery(&remove_home);
            let file = unix_file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(file) = file {
                file.remove();
            }
        })),
        grace: Duration::from_secs(5),
        bound,
    })
}
