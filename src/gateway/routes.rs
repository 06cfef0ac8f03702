//! The gateway's route table: every route, the least [`Role`] it needs, and its timeout class.
//!
//! Part of `root/gateway`. [`Gateway::router`](super::Gateway::router) builds the router from
//! [`table`] and from nothing else, so a route cannot exist without a declared role; a test
//! walks the table with a token of each role. Each route gets, outermost first:
//!
//! 1. bearer authentication ([`authenticate`](super::server::authenticate)), except the public
//!    `POST /pair` and the dashboard's files (`GET /`, `GET /assets/...`);
//! 2. the role check ([`require`]): 403 naming the role needed and the caller's;
//! 3. for [`Timeout::Default`], the default request timeout (504 past it), which also bounds
//!    reading the body;
//! 4. the body cap ([`capped_body`]): the body is read up to [`MAX_BODY`] (413 past it)
//!    before the handler runs, whether or not the handler reads it.
//!
//! | role | may |
//! |---|---|
//! | `viewer` | read: the tree and its event log (sessions redacted), health, metrics, per-server stats, MCP discovery and health, the session manager (process, breaker, queue, agents, rooms and their events), the agents of both paths and their feed (`/api/agents`, `/ws/agents/events`), the progress events of a session it holds the token of |
//! | `operator` | also act: restart actors, reset the session manager's breaker, create MCP sessions and call tools, test http/sse/url server configs |
//! | `owner` | also spawn and administer: test stdio server configs (the handler checks), terminals (`/ws/terminal`) and their launchers, reload, edit `[[mcp.servers]]` in config.toml, pairing codes, tokens (gateway and client); sees session ids and labels, and watches any session's progress |
//!
//! A client token (for the MCP server's standard flow) is no gateway token: every route but
//! `POST /pair` answers it 401, as any unknown token.

use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter, on};

use super::server::{Caller, Gateway, MAX_BODY, authenticate, within_default};
use super::{api, assets, config_api, events, fleet, proxy, stats, terminal};
use crate::auth::Role;
use crate::http::response::error;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone who passes the Origin check: `POST /pair`, which trades a one-time code for a
    /// token (its attempts are throttled like bad tokens), and the dashboard's page and files
    /// (`GET /`, `GET /assets/...`), which carry no data.
    Public,
    /// A bearer token of this role or a higher one.
    Token(Role),
}

/// Which timeout bounds a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// The gateway's default request timeout (`[gateway] request_timeout_secs`).
    Default,
    /// Its handler applies its own (the MCP proxy's ceilings), or none (event streams).
    Own,
}

/// One route of the table.
pub(crate) struct Route {
    /// The HTTP method (the handler answers it alone; read by the route-table test).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) method: Method,
    /// The axum path pattern.
    pub(crate) path: &'static str,
    /// Who may call it.
    pub(crate) access: Access,
    /// Which timeout bounds it.
    pub(crate) timeout: Timeout,
    /// The handler, for `method` only.
    handler: MethodRouter<Gateway>,
}

impl Route {
    fn new<H, T>(
        method: Method,
        path: &'static str,
        access: Access,
        timeout: Timeout,
        handler: H,
    ) -> Self
    where
        H: Handler<T, Gateway>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        Self {
            method,
            path,
            access,
            timeout,
            handler: on(filter, handler),
        }
    }

    /// The handler with its guards (see the module docs), for [`Gateway::router`].
    pub(super) fn into_method_router(self, gw: &Gateway) -> MethodRouter<Gateway> {
        // Layers added later run first.
        let mut handler = self.handler.layer(axum::middleware::from_fn(capped_body));
        if self.timeout == Timeout::Default {
            handler = handler.layer(from_fn_with_state(gw.clone(), within_default));
        }
        if let Access::Token(role) = self.access {
            handler = handler
                .layer(from_fn_with_state(role, require))
                .layer(from_fn_with_state(gw.clone(), authenticate));
        }
        handler
    }
}

/// Every route of the gateway.
pub(crate) fn table() -> Vec<Route> {
    use Access::{Public, Token};
    use Role::{Operator, Owner, Viewer};
    use Timeout::{Default, Own};
    let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
    vec![
        Route::new(post.clone(), "/pair", Public, Default, api::pair),
        // The dashboard's page and files: no data in them, so no token (everything they show
        // comes from the token-only routes below).
        Route::new(get.clone(), "/", Public, Default, assets::index),
        Route::new(
            get.clone(),
            "/assets/{*path}",
            Public,
            Default,
            assets::asset,
        ),
        // The caller's own token: who it is, and signing out (revokes it).
        Route::new(
            get.clone(),
            "/api/whoami",
            Token(Viewer),
            Default,
            api::whoami,
        ),
        Route::new(
            post.clone(),
            "/api/logout",
            Token(Viewer),
            Default,
            api::logout,
        ),
        // Introspection and health.
        Route::new(
            get.clone(),
            "/api/health",
            Token(Viewer),
            Default,
            api::health,
        ),
        Route::new(
            get.clone(),
            "/metrics",
            Token(Viewer),
            Default,
            api::metrics,
        ),
        Route::new(
            get.clone(),
            "/api/servers/stats",
            Token(Viewer),
            Default,
            stats::servers,
        ),
        Route::new(
            get.clone(),
            "/api/actors",
            Token(Viewer),
            Default,
            api::actors,
        ),
        Route::new(
            get.clone(),
            "/api/actors/{*path}",
            Token(Viewer),
            Default,
            api::actor,
        ),
        // The supervision event log; its stream runs until the client or the daemon goes.
        Route::new(
            get.clone(),
            "/api/events",
            Token(Viewer),
            Own,
            events::events,
        ),
        // `POST /api/actors/{path}/restart`.
        Route::new(
            post.clone(),
            "/api/actors/{*path}",
            Token(Operator),
            Default,
            api::restart,
        ),
        // Administration.
        // Waits for the reload however long its server stops take, bounded by
        // `reload::RELOAD_WAIT` in the handler, not by the default request timeout.
        Route::new(post.clone(), "/api/reload", Token(Owner), Own, api::reload),
        // The config editor: entries name commands to spawn. Writes end in a reload, bounded
        // like `/api/reload`'s.
        Route::new(
            get.clone(),
            "/api/config/servers",
            Token(Owner),
            Default,
            config_api::servers,
        ),
        Route::new(
            Method::PUT,
            "/api/config/servers/{id}", // {id}: the server name
            Token(Owner),
            Own,
            config_api::put_server,
        ),
        Route::new(
            delete.clone(),
            "/api/config/servers/{id}", // {id}: the server name
            Token(Owner),
            Own,
            config_api::delete_server,
        ),
        Route::new(
            post.clone(),
            "/api/pair/code",
            Token(Owner),
            Default,
            api::pair_code,
        ),
        Route::new(
            get.clone(),
            "/api/tokens",
            Token(Owner),
            Default,
            api::tokens,
        ),
        Route::new(
            post.clone(),
            "/api/tokens",
            Token(Owner),
            Default,
            api::create_token,
        ),
        Route::new(
            delete,
            "/api/tokens/{id}",
            Token(Owner),
            Default,
            api::revoke,
        ),
        // The session manager (the dashboard's Sidecars view).
        Route::new(
            get.clone(),
            "/api/sidecars",
            Token(Viewer),
            Default,
            fleet::sidecars,
        ),
        Route::new(
            post.clone(),
            "/api/sidecars/breaker/reset",
            Token(Operator),
            Default,
            fleet::reset_breaker,
        ),
        Route::new(
            get.clone(),
            "/api/sidecars/agents/{id}/events",
            Token(Viewer),
            Default,
            fleet::agent_events,
        ),
        Route::new(
            get.clone(),
            "/api/sidecars/agents/{id}/stream",
            Token(Viewer),
            Own,
            fleet::agent_stream,
        ),
        Route::new(
            get.clone(),
            "/api/sidecars/rooms/{id}/messages",
            Token(Viewer),
            Default,
            fleet::room_messages,
        ),
        Route::new(
            get.clone(),
            "/api/sidecars/rooms/{id}/stream",
            Token(Viewer),
            Own,
            fleet::room_stream,
        ),
        // Agents of both paths (session manager and CLI fallback), and their live feed.
        Route::new(
            get.clone(),
            "/api/agents",
            Token(Viewer),
            Default,
            fleet::agents,
        ),
        Route::new(
            get.clone(),
            "/ws/agents/events",
            Token(Viewer),
            Own,
            super::ws::agents::ws_agent_events,
        ),
        // The MCP proxy.
        Route::new(
            get.clone(),
            "/api/mcp/discovery",
            Token(Viewer),
            Default,
            proxy::discovery,
        ),
        Route::new(
            get.clone(),
            "/api/mcp/health",
            Token(Viewer),
            Own,
            proxy::health,
        ),
        Route::new(
            post.clone(),
            "/api/mcp/session",
            Token(Operator),
            Own,
            proxy::session,
        ),
        Route::new(
            post.clone(),
            "/api/mcp/call",
            Token(Operator),
            Own,
            proxy::call,
        ),
        Route::new(
            get.clone(),
            "/api/mcp/session/{id}/events",
            Token(Viewer),
            Own,
            proxy::events,
        ),
        // Operator for http/sse/url; the handler asks for the owner for stdio (it spawns).
        Route::new(
            post,
            "/api/mcp/servers/test",
            Token(Operator),
            Own,
            proxy::test_server,
        ),
        Route::new(
            get.clone(),
            "/ws/mcp/events",
            Token(Viewer),
            Own,
            proxy::ws_events,
        ),
        // The Code tab: a terminal runs any command as the daemon's user.
        Route::new(
            get.clone(),
            "/api/terminal/launchers",
            Token(Owner),
            Default,
            terminal::launchers,
        ),
        Route::new(
            get,
            "/ws/terminal",
            Token(Owner),
            Own,
            terminal::ws_terminal,
        ),
    ]
}

/// Route layer: 403 unless the caller's role allows `needed`.
async fn require(State(needed): State<Role>, request: Request, next: Next) -> Response {
    let role = request.extensions().get::<Caller>().map(|c| c.role);
    match role {
        Some(role) if role.allows(needed) => next.run(request).await,
        role => forbidden(
            request.method(),
            request.uri().path(),
            needed,
            role.unwrap_or_default(),
        ),
    }
}

/// The 403 of a caller whose role is `role` on a route that needs `needed`.
pub(super) fn forbidden(method: &Method, path: &str, needed: Role, role: Role) -> Response {
    let how = match needed {
        Role::Owner => {
            "use the owner token ($REVKA_HOME/gateway.token) or one paired with \
                        `revka pair --role owner`"
        }
        _ => "pair a token with `revka pair --role operator`",
    };
    error(
        StatusCode::FORBIDDEN,
        format!(
            "forbidden: {method} {path} needs the {needed} role; this token has the {role} role ({how})"
        ),
    )
}

/// Route layer: reads the body up to [`MAX_BODY`] (413 past it) before the handler, so the cap
/// holds for every route, also those that ignore their body.
async fn capped_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => next.run(Request::from_parts(parts, bytes.into())).await,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body exceeds {} KiB", MAX_BODY / 1024),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                )
            }
        }
    }
}
