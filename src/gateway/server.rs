//! The gateway's listener, router and request guards.
//!
//! Order of checks on every request:
//! 1. `Host`/`Origin` ([`origin`](super::origin)): on a loopback bind the `Host` must be a
//!    loopback name; a present `Origin` must be exactly the gateway's own origin or one of
//!    `[gateway] allowed_origins`.
//! 2. Bearer auth for everything but `POST /pair` ([`authenticate`]): the token from
//!    `Authorization`, or for the WebSocket routes the `bearer.<token>` subprotocol or (the
//!    read-only relays) `?token=`. A valid token always passes; a wrong one is answered 401
//!    after a delay that grows with the failures of its source (see [`FailureThrottle`]), or
//!    429 at once while [`MAX_DELAYED_FAILURES`] failures are already waiting.
//! 3. The role the route needs (the route table, `routes`): 403 below it.
//! 4. A timeout: the default (`REVKA_GATEWAY_TIMEOUT_SECS`, else `[gateway] request_timeout_secs`,
//!    30 s) for every route without one of its own (`/api/mcp/*` have theirs), 504 past it.
//! 5. Body cap: 64 KiB for every body (413), read before the handler runs.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use revka_actors::listener::{ListenerSpec, ServeFn};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{origin, routes};
use crate::auth::{CLIENT_TOKEN_PREFIX, FailureThrottle, MAX_DELAYED_FAILURES, Role, TokenId};
use crate::http::bearer::{bearer_from_subprotocols, extract_bearer};
use crate::http::discovery::{Discovery, remove_discovery_file, write_discovery_file};
use crate::http::response::error;
use crate::tree::Services;

/// The gateway's discovery file in `$REVKA_HOME`.
pub const GATEWAY_FILE: &str = "gateway.json";
/// Body cap of every route.
pub const MAX_BODY: usize = 64 * 1024;

/// Shared state of the gateway's handlers.
#[derive(Clone)]
pub struct Gateway {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) services: Services,
    /// Failed attempts per source, and the delay each earns.
    pub(super) throttle: Mutex<FailureThrottle>,
    /// One permit per failed attempt waiting out its delay: bounds the requests an attacker
    /// can keep sleeping.
    pub(super) delayed: Semaphore,
    /// The address the gateway is bound to (for same-origin checks).
    pub(super) addr: SocketAddr,
    /// `mcp.json`, cached by modification time.
    pub(super) discovery: Mutex<Option<(SystemTime, Discovery)>>,
}

impl Gateway {
    /// The gateway over the daemon's services, bound at `addr`.
    pub fn new(services: Services, addr: SocketAddr) -> Self {
        Self {
            inner: Arc::new(Inner {
                services,
                throttle: Mutex::new(FailureThrottle::default()),
                delayed: Semaphore::new(MAX_DELAYED_FAILURES),
                addr,
                discovery: Mutex::new(None),
            }),
        }
    }

    /// The routes: those of the route table (`routes::table`), and nothing else.
    pub fn router(self) -> Router {
        let mut router = Router::new();
        for route in routes::table() {
            let path = route.path;
            router = router.route(path, route.into_method_router(&self));
        }
        router
            .fallback(|req: Request| async move {
                error(
                    StatusCode::NOT_FOUND,
                    format!("no route {} {}", req.method(), req.uri().path()),
                )
            })
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .layer(from_fn_with_state(self.clone(), origin::same_origin))
            .layer(axum::middleware::map_response(
                crate::http::response::close_if_body_refused,
            ))
            .with_state(self)
    }

    pub(super) fn services(&self) -> &Services {
        &self.inner.services
    }

    /// Runs `fut` within `limit`, else answers 504.
    pub(super) async fn within(
        &self,
        limit: Option<Duration>,
        fut: impl Future<Output = Response>,
    ) -> Response {
        // Read at each request: a reload changes the default timeout live.
        let limit =
            limit.unwrap_or_else(|| self.inner.services.config.get().gateway.request_timeout());
        match tokio::time::timeout(limit, fut).await {
            Ok(response) => response,
            Err(_) => error(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the request timed out after {}s", limit.as_secs()),
            ),
        }
    }

    /// Counts a failed attempt (a wrong token, a wrong pairing code) from `ip` and waits out
    /// the delay it earns; `Err(429)` at once instead when [`MAX_DELAYED_FAILURES`] failures
    /// are already waiting. The caller then answers the failure.
    pub(super) async fn failed_attempt(&self, ip: IpAddr) -> Result<(), Box<Response>> {
        let delay = self
            .inner
            .throttle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_failure(ip, Instant::now().into_std());
        let Ok(_permit) = self.inner.delayed.try_acquire() else {
            tracing::debug!(%ip, "too many failed attempts waiting; answering 429");
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed authentication attempts in progress; retry in 1 s",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return Err(Box::new(response));
        };
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// The bearer token of a request: `Authorization`, or for WebSockets the `bearer.<token>`
/// subprotocol (`/ws/mcp/events`, `/ws/agents/events` and `/ws/terminal`) or the `token`
/// query parameter (the read-only relays `/ws/mcp/events` and `/ws/agents/events` only).
fn presented_token(request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(extract_bearer)
    {
        return Some(token.to_owned());
    }
    let path = request.uri().path();
    let read_only = path == "/ws/mcp/events" || path == "/ws/agents/events";
    if !read_only && path != "/ws/terminal" {
        return None;
    }
    if let Some(token) = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_from_subprotocols)
    {
        return Some(token.to_owned());
    }
    // `?token=` only for the read-only relays: the token of a terminal never goes in a URL.
    if !read_only {
        return None;
    }
    request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(percent_decode)
    })
}

/// Decodes a query-string value: `+` is a space, then `%XX` escapes (an invalid escape is kept
/// as it is; invalid UTF-8 becomes U+FFFD).
pub(super) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Middleware: bearer auth. A valid token passes with its [`Caller`]; a wrong one earns a
/// delay ([`Gateway::failed_attempt`]) before its 401; no token at all is a 401 at once (it is
/// no guess).
pub(super) async fn authenticate(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = presented_token(&request);
    let verified = presented
        .as_deref()
        .and_then(|t| gw.services().tokens.verify_caller(t));
    if let Some(verified) = verified {
        request.extensions_mut().insert(Caller {
            id: verified.id,
            role: verified.role,
        });
        return next.run(request).await;
    }
    if presented.is_some() {
        let ip = peer.ip();
        tracing::debug!(%ip, path = %request.uri().path(), "gateway request with a wrong token");
        if let Err(response) = gw.failed_attempt(ip).await {
            return *response;
        }
    }
    // Told by its prefix alone, never by the store: the answer is the same whether or not the
    // client token exists.
    let message = if presented
        .as_deref()
        .is_some_and(|t| t.starts_with(CLIENT_TOKEN_PREFIX))
    {
        "unauthorized: a valid gateway bearer token is required (an `rvkc_` client token is for \
         the MCP endpoint of mcp.json only)"
    } else {
        "unauthorized: a valid gateway bearer token is required"
    };
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Who an authenticated request comes from (set by [`authenticate`]).
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The token's id: what the gateway records as the owner of the MCP sessions it mints.
    pub(crate) id: TokenId,
    /// What the token may do.
    pub(crate) role: Role,
}

/// Bounds a route that has no timeout of its own by the default one (a 504 past it).
pub(super) async fn within_default(
    State(gw): State<Gateway>,
    request: Request,
    next: Next,
) -> Response {
    gw.within(None, next.run(request)).await
}

/// The listener spec of `root/gateway`: binds `[gateway] host:port`, writes
/// `$REVKA_HOME/gateway.json`, and periodically persists token usage. Connections are served by
/// the shared serve loop ([`crate::http`]: `[http]` timeouts and per-source connection cap).
pub fn listener(services: &Services) -> anyhow::Result<ListenerSpec> {
    let config = services.config.get();
    let gw = &config.gateway;
    let ip: IpAddr = match gw.host.trim_start_matches('[').trim_end_matches(']') {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        other => other.parse().map_err(|e| {
            anyhow::anyhow!("gateway.host {other:?} is not an IP address (or localhost): {e}")
        })?,
    };
    let addr = SocketAddr::new(ip, gw.port);
    let state = services.clone();
    let serve: ServeFn = Arc::new(move |listener, stop| {
        let bound = listener.local_addr().unwrap_or(addr);
        let gateway = Gateway::new(state.clone(), bound);
        let tokens = state.tokens.clone();
        let config = state.config.clone();
        // Per-server stats are sampled while the gateway serves (the guard stops it).
        let sampler =
            crate::telemetry::history::spawn_sampler(state.telemetry.clone(), config.clone());
        Box::pin(async move {
            let _sampler = sampler;
            let flusher = tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(60));
                loop {
                    every.tick().await;
                    if let Err(e) = tokens.flush() {
                        tracing::warn!(error = %e, "cannot persist token usage");
                    }
                }
            });
            let app = gateway.router();
            let result = crate::http::serve(
                listener,
                move || crate::http::Limits::from(&config.get().http),
                move |peer| crate::http::WithPeer::new(app.clone(), peer),
                stop,
            )
            .await;
            flusher.abort();
            result
        })
    });
    let file = services.home.join(GATEWAY_FILE);
    let remove = file.clone();
    let tokens = services.tokens.clone();
    Ok(ListenerSpec {
        addr,
        serve,
        on_bound: Some(Arc::new(move |bound| {
            write_discovery_file(&file, &format!("http://{bound}"))
                .map_err(|e| format!("cannot write {}: {e}", file.display()))
        })),
        on_stop: Some(Arc::new(move || {
            let _ = tokens.flush();
            remove_discovery_file(&remove);
        })),
        grace: Duration::from_secs(5),
        bound: tokio::sync::watch::channel(None).0,
    })
}
