//! The gateway's listener, router and request guards.
//!
//! Order of checks on every request:
//! 1. `Host`/`Origin`: on a loopback bind the `Host` must be a loopback name; a present
//!    `Origin` must be the gateway's own origin (or a loopback origin on a loopback bind).
//! 2. Bearer auth for everything but `POST /pair`: the token from `Authorization`, or for the
//!    WebSocket route the `bearer.<token>` subprotocol or `?token=`. Failed attempts are
//!    rate-limited per client address (429 with `Retry-After`).
//! 3. Body cap: 64 KiB for every `/api/*` body (413).
//! 4. A timeout: the default (`REVKA_GATEWAY_TIMEOUT_SECS`, else `[gateway] request_timeout_secs`,
//!    30 s) for every route without one of its own (`/api/mcp/*` have theirs), 504 past it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use revka_actors::listener::{ListenerSpec, ServeFn};
use serde_json::json;
use tokio::time::Instant;

use super::auth::{FailedAuthLimiter, bearer_from_subprotocols, extract_bearer};
use super::{api, proxy};
use crate::mcp_server::{Discovery, remove_discovery_file, write_discovery_file};
use crate::tree::Services;

/// The gateway's discovery file in `$REVKA_HOME`.
pub const GATEWAY_FILE: &str = "gateway.json";
/// Body cap of every `/api/*` route.
pub const MAX_BODY: usize = 64 * 1024;

/// Shared state of the gateway's handlers.
#[derive(Clone)]
pub struct Gateway {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) services: Services,
    pub(super) limiter: Mutex<FailedAuthLimiter>,
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
                limiter: Mutex::new(FailedAuthLimiter::default()),
                addr,
                discovery: Mutex::new(None),
            }),
        }
    }

    /// The routes.
    pub fn router(self) -> Router {
        // Routes without a timeout of their own get the default one.
        let default_timeout = Router::new()
            .route("/api/health", get(api::health))
            .route("/metrics", get(api::metrics))
            .route("/api/actors", get(api::actors))
            .route("/api/actors/{*path}", get(api::actor).post(api::restart))
            .route("/api/reload", post(api::reload))
            .route("/api/mcp/discovery", get(proxy::discovery))
            .merge(
                // Minting pairing codes and managing tokens: the local owner only, so that a
                // paired device cannot pair more devices or revoke the owner.
                Router::new()
                    .route("/api/pair/code", post(api::pair_code))
                    .route("/api/tokens", get(api::tokens))
                    .route("/api/tokens/{id}", delete(api::revoke))
                    .route_layer(axum::middleware::from_fn(owner_only)),
            )
            .layer(from_fn_with_state(self.clone(), within_default));
        let protected = Router::new()
            .merge(default_timeout)
            .route("/api/mcp/health", get(proxy::health))
            .route("/api/mcp/session", post(proxy::session))
            .route("/api/mcp/call", post(proxy::call))
            .route("/api/mcp/session/{id}/events", get(proxy::events))
            .route("/api/mcp/servers/test", post(proxy::test_server))
            .route("/ws/mcp/events", get(proxy::ws_events))
            .layer(from_fn_with_state(self.clone(), authenticate));
        let pair = Router::new()
            .route("/pair", post(api::pair))
            .layer(from_fn_with_state(self.clone(), within_default));
        Router::new()
            .merge(pair)
            .merge(protected)
            .fallback(|req: Request| async move {
                error(
                    StatusCode::NOT_FOUND,
                    format!("no route {} {}", req.method(), req.uri().path()),
                )
            })
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .layer(from_fn_with_state(self.clone(), same_origin))
            .layer(axum::middleware::map_response(
                crate::mcp_server::close_if_body_refused,
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

    /// Counts a failed authentication attempt from `ip` (also used by `/pair`).
    pub(super) fn auth_failed(&self, ip: IpAddr) {
        self.inner
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_failure(ip, Instant::now().into_std());
    }

    /// `Err(429 response)` if `ip` is locked out after too many failures.
    pub(super) fn check_rate(&self, ip: IpAddr) -> Result<(), Box<Response>> {
        let check = self
            .inner
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(ip, Instant::now().into_std());
        check.map_err(|retry| {
            let secs = retry.as_secs().max(1);
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed authentication attempts; retry in {secs} s"),
            );
            if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Box::new(response)
        })
    }
}

/// A JSON error `{"error": message}`.
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The bearer token of a request: `Authorization`, or for WebSockets the `bearer.<token>`
/// subprotocol or the `token` query parameter.
fn presented_token(request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(extract_bearer)
    {
        return Some(token.to_owned());
    }
    if request.uri().path() != "/ws/mcp/events" {
        return None;
    }
    if let Some(token) = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_from_subprotocols)
    {
        return Some(token.to_owned());
    }
    request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(percent_decode)
    })
}

/// Decodes `%XX` escapes and `+` (query strings).
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Middleware: bearer auth with per-address rate limiting of failures.
async fn authenticate(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let ip = peer.ip();
    if let Err(response) = gw.check_rate(ip) {
        return *response;
    }
    let verified = presented_token(&request).and_then(|t| gw.services().tokens.verify_caller(&t));
    match verified {
        Some((_, owner)) => {
            request.extensions_mut().insert(Caller { owner });
            gw.inner
                .limiter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record_success(ip);
            next.run(request).await
        }
        None => {
            gw.auth_failed(ip);
            tracing::debug!(%ip, path = %request.uri().path(), "gateway request without a valid token");
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized: a valid gateway bearer token is required",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

/// Who an authenticated request comes from (set by [`authenticate`]).
#[derive(Debug, Clone, Copy)]
struct Caller {
    /// It presented the owner token (`$REVKA_HOME/gateway.token`), not a paired one.
    owner: bool,
}

/// Route layer: only the owner token passes (403 otherwise).
async fn owner_only(request: Request, next: Next) -> Response {
    if request
        .extensions()
        .get::<Caller>()
        .is_some_and(|caller| caller.owner)
    {
        return next.run(request).await;
    }
    error(
        StatusCode::FORBIDDEN,
        format!(
            "{} {} needs the owner token ($REVKA_HOME/gateway.token); a paired token may not \
             mint pairing codes or manage tokens",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Bounds a route that has no timeout of its own by the default one (a 504 past it).
pub(super) async fn within_default(
    State(gw): State<Gateway>,
    request: Request,
    next: Next,
) -> Response {
    gw.within(None, next.run(request)).await
}

/// Middleware: `Host` and `Origin` checks (DNS rebinding, cross-site requests).
async fn same_origin(State(gw): State<Gateway>, request: Request, next: Next) -> Response {
    match check_origin(request.headers(), gw.inner.addr) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            tracing::warn!(%reason, path = %request.uri().path(), "gateway request refused");
            error(StatusCode::FORBIDDEN, format!("forbidden: {reason}"))
        }
    }
}

fn check_origin(headers: &HeaderMap, addr: SocketAddr) -> Result<(), String> {
    use crate::mcp_server::{is_loopback_host, is_loopback_origin};
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or("missing Host header")?;
    let loopback = addr.ip().is_loopback();
    if loopback && !is_loopback_host(host) {
        return Err(format!("Host {host:?} is not a loopback name"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let same = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host));
    if same || (loopback && is_loopback_origin(origin)) {
        Ok(())
    } else {
        Err(format!("Origin {origin:?} is not this gateway's origin"))
    }
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
        Box::pin(async move {
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
