//! Which gateway token may use which MCP session through the proxy (`root/gateway`).
//!
//! A session is usable through `/api/mcp/call`, `/api/mcp/session/{id}/events` and
//! `/ws/mcp/events` with its own MCP token (the MCP server checks it), or without one by the
//! gateway token that created it through `POST /api/mcp/session`: [`claim`] records that
//! token's id on the session ([`Session::set_proxy_owner`]), and [`mcp_token`] lends the
//! session's token to that caller; the owner role (who sees every session anyway) may also
//! watch any session's progress, not call in it. An unknown session and another's get the same answer,
//! so session ids cannot be probed.
//!
//! [`Session::set_proxy_owner`]: revka_actors::session::Session::set_proxy_owner

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::upstream_error;
use crate::auth::Role;
use crate::gateway::server::{Caller, Gateway};
use crate::http::response::error;

/// The largest answer of the MCP server's `POST /session` read to learn the session's id.
const MAX_SESSION_ANSWER: usize = 64 * 1024;

/// Passes back a successful `POST /session` answer, having recorded `caller` as the owner of
/// the session it names.
pub(super) async fn claim(gw: &Gateway, caller: &Caller, mut resp: reqwest::Response) -> Response {
    #[derive(Deserialize)]
    struct Minted {
        session_id: String,
    }
    let (status, content_type) = super::status_and_type(&resp);
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_SESSION_ANSWER => {
                body.extend_from_slice(&chunk);
            }
            Ok(Some(_)) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "the MCP server's session answer exceeds {} KiB",
                        MAX_SESSION_ANSWER / 1024
                    ),
                );
            }
            Ok(None) => break,
            Err(e) => return upstream_error(&e),
        }
    }
    let session = serde_json::from_slice::<Minted>(&body)
        .ok()
        .and_then(|m| gw.services().sessions.get(&m.session_id));
    match session {
        Some(session) => {
            session.set_proxy_owner(caller.id.as_str());
        }
        None => tracing::warn!(
            "the MCP server's session answer names no live session; it is usable through the \
             gateway only with its token"
        ),
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

/// What a gateway caller does with a session it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// Calls in it (`/api/mcp/call`): the creator only, or with the session's token.
    Call,
    /// Watches its progress stream: also the owner role, which sees every session in
    /// `/api/actors` already (the dashboard's Sessions view).
    Watch,
}

/// The MCP token to forward for session `id`: the caller's own `presented` one (the MCP server
/// checks it); else the session's, lent to the gateway token that created the session through
/// this proxy and, to watch it, to the owner role. `None` for an unknown session and another's
/// alike.
pub(super) fn mcp_token(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
    presented: Option<&str>,
    usage: Use,
) -> Option<String> {
    match presented.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => Some(t.to_owned()),
        None => gw
            .services()
            .sessions
            .get(id)
            .filter(|s| {
                (usage == Use::Watch && caller.role == Role::Owner)
                    || s.proxy_owner() == Some(caller.id.as_str())
            })
            .map(|s| s.proxy_token()),
    }
}
