//! The gateway's `Host` and `Origin` guard (DNS rebinding, cross-site requests), the first
//! check every request of `root/gateway` meets, WebSocket upgrades included.
//!
//! - On a loopback bind, the `Host` must be a loopback name (`127.0.0.1`, `localhost`,
//!   `[::1]`, with any port): a page on `evil.example` that rebinds its name to 127.0.0.1
//!   still sends `Host: evil.example`.
//! - A present `Origin` must be exactly the gateway's own origin, `http://<Host name>:<bound
//!   port>`, or one of `[gateway] allowed_origins` (read at each request, so a reload applies
//!   at once). Any other loopback origin, say a dev server on `http://localhost:3000`, is
//!   another site and is refused. Origins are compared in the normal form of
//!   [`normalise_origin`], the one browsers send.
//!
//! A request without `Origin` (scripts, the CLI) passes; it still needs a bearer token.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::server::Gateway;
use crate::config::normalise_origin;
use crate::http::loopback::is_loopback_host;
use crate::http::response::error;

/// Middleware: 403 unless [`check`] passes.
pub(super) async fn same_origin(
    State(gw): State<Gateway>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = gw.services().config.get().gateway.allowed_origins.clone();
    match check(request.headers(), gw.inner.addr, &allowed) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            tracing::warn!(%reason, path = %request.uri().path(), "gateway request refused");
            error(StatusCode::FORBIDDEN, format!("forbidden: {reason}"))
        }
    }
}

/// Checks `Host` and `Origin` for a gateway bound at `bound`, with `allowed` (normalised)
/// extra origins; `Err` is the reason to refuse.
pub(super) fn check(
    headers: &HeaderMap,
    bound: SocketAddr,
    allowed: &[String],
) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or("missing Host header")?;
    if bound.ip().is_loopback() && !is_loopback_host(host) {
        return Err(format!("Host {host:?} is not a loopback name"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let refused = || {
        Err(format!(
            "Origin {:?} is not this gateway's origin (http://{}:{}) nor one of \
             [gateway] allowed_origins",
            String::from_utf8_lossy(origin.as_bytes()),
            host_name(host),
            bound.port()
        ))
    };
    let Some(origin) = origin.to_str().ok().and_then(|o| normalise_origin(o).ok()) else {
        return refused();
    };
    let own = normalise_origin(&format!("http://{}:{}", host_name(host), bound.port()));
    if own.is_ok_and(|own| own == origin) || allowed.contains(&origin) {
        Ok(())
    } else {
        refused()
    }
}

/// The name part of a `Host` value (`127.0.0.1:8080` → `127.0.0.1`, `[::1]:80` → `[::1]`).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(name, _)| &host[..=name.len()]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}
