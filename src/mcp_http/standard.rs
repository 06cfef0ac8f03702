//! The standard Streamable HTTP path of `/mcp`, beside seed 001's two-header flow, and which
//! of the two a request takes.
//!
//! Part of the MCP server (`root/mcp_http`). Every `/mcp` request (`POST`, `GET`, `DELETE`) is
//! resolved by [`caller`]:
//!
//! - `X-Revka-Session` present: the two-header flow, unchanged (the session's own token in
//!   `Authorization`, 401 otherwise).
//! - else `Mcp-Session-Id` present: the session must exist, have been created on this path,
//!   and the request must carry the client token that created it (compared in constant
//!   time). A request without a valid client token is 401 (when tokens are
//!   required); a session that does not exist, expired, or belongs to another client (or to
//!   the two-header flow) is 404, the same answer in each case, which tells a client to
//!   `initialize` again. A present `MCP-Protocol-Version` must be a version Revka speaks (400).
//!   The token is compared with the one the session keeps (`ClientBinding`), so a request on a
//!   session costs no more than one of the two-header flow.
//! - else no session: a client token is verified (401 without one, unless `[mcp_server]
//!   require_token = false`); only `initialize` then creates a session ([`initialize`]: the
//!   same supervised `session:<id>` actor, table, cap, eviction floor and per-source creation
//!   rate as `POST /session`), answered as JSON with `Mcp-Session-Id`; anything else is 400.
//!
//! A standard request must also `Accept` what it will be answered with (406): both
//! `application/json` and `text/event-stream` on a `POST`, `text/event-stream` on a `GET`.
//! `DELETE /mcp` ends the session (204).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use revka_actors::session::{ClientBinding, Credential, NewSession, Session, SessionError};
use revka_mcp::jsonrpc::{ErrorObject, Id, Request as RpcRequest};
use revka_mcp::protocol::SUPPORTED_PROTOCOL_VERSIONS;
use serde_json::Value;

use super::client_auth::ClientGrant;
use super::guard::{rpc_error, rpc_result};
use super::rpc::{SESSION_HEADER, retry_after, unauthorized, whole_secs};
use super::{McpServer, rpc};
use crate::http::Source;

/// The session header of the standard path.
pub(crate) const MCP_SESSION_ID: header::HeaderName =
    header::HeaderName::from_static("mcp-session-id");
/// The protocol version a standard client sends after `initialize`.
const PROTOCOL_VERSION: header::HeaderName =
    header::HeaderName::from_static("mcp-protocol-version");

/// JSON-RPC error code of a request the standard path cannot take without a session (400), or
/// of a session it cannot create now (429, 503: `Retry-After` says when to try again).
const NO_SESSION: i64 = -32000;
/// JSON-RPC error code of an unknown or expired `Mcp-Session-Id` (404).
const SESSION_NOT_FOUND: i64 = -32001;

/// Who sent a `/mcp` request.
pub(crate) enum Caller {
    /// A live session, reached by either path; the request was authenticated.
    Session(Arc<Session>),
    /// No session header: an `initialize` creates a session for this client.
    New(NewClient),
}

/// A client with no session yet, whose token (if one is required) verified.
pub(crate) struct NewClient {
    /// The grant of its token; `None` when no token is required.
    grant: Option<ClientGrant>,
    /// Its token, which its session will require.
    credential: Option<Credential>,
}

/// What a `POST /mcp` may be answered with: JSON, or an SSE stream (`tools/call`).
pub(crate) const POST_ANSWERS: &[&str] = &["application/json", "text/event-stream"];
/// What `GET /mcp` is answered with.
pub(crate) const GET_ANSWERS: &[&str] = &["text/event-stream"];
/// What `DELETE /mcp` is answered with (no body).
pub(crate) const NO_ANSWER: &[&str] = &[];

/// Why a `/mcp` request is refused before its body is read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// No valid credential: 401.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// An unknown, expired or foreign `Mcp-Session-Id`: 404.
    #[error(
        "session not found: unknown or expired Mcp-Session-Id; send initialize without it to \
         start a new session"
    )]
    SessionNotFound,
    /// An `MCP-Protocol-Version` Revka does not speak: 400.
    #[error("unsupported MCP-Protocol-Version {0:?} (supported: {supported})", supported = SUPPORTED_PROTOCOL_VERSIONS.join(", "))]
    UnsupportedVersion(String),
    /// An `Accept` that does not admit the answer: 406.
    #[error("Accept must admit {}", .0.join(" and "))]
    NotAcceptable(&'static [&'static str]),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Unauthorized(reason) => return unauthorized(reason),
            Self::SessionNotFound => (StatusCode::NOT_FOUND, SESSION_NOT_FOUND),
            Self::UnsupportedVersion(_) => (StatusCode::BAD_REQUEST, ErrorObject::INVALID_REQUEST),
            Self::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, ErrorObject::INVALID_REQUEST),
        };
        rpc_error(status, None, code, &self.to_string())
    }
}

/// Resolves a `/mcp` request to its caller (module docs); on the standard path, its `Accept`
/// must admit each of `answers`.
pub(crate) fn caller(
    server: &McpServer,
    headers: &HeaderMap,
    answers: &'static [&'static str],
) -> Result<Caller, Refusal> {
    if let Some(session_id) = headers.get(&SESSION_HEADER) {
        return rpc::authenticate(server, headers, session_id)
            .map(Caller::Session)
            .map_err(Refusal::Unauthorized);
    }
    let picked = Picked::from(headers);
    check_accept(picked.accept, answers)?;
    let inner = &server.inner;
    let token = picked
        .authorization
        .and_then(|v| crate::http::bearer::extract_bearer_bytes(v.as_bytes()));
    let Some(session_id) = picked.session else {
        if !inner.require_token {
            return Ok(Caller::New(NewClient {
                grant: None,
                credential: None,
            }));
        }
        let token = token.ok_or(Refusal::Unauthorized(MISSING_CLIENT_TOKEN))?;
        let grant = inner
            .client_auth
            .verify_client(token)
            .ok_or(Refusal::Unauthorized(NOT_A_CLIENT_TOKEN))?;
        return Ok(Caller::New(NewClient {
            grant: Some(grant),
            credential: Some(Credential::new(token)),
        }));
    };
    check_protocol_version(picked.protocol_version)?;
    let session = std::str::from_utf8(session_id.as_bytes())
        .ok()
        .and_then(|id| inner.sessions.get(id.trim_ascii()));
    if let Some(session) = session
        && session.admits_client(token)
    {
        return Ok(Caller::Session(session));
    }
    // Refused. Without a valid client token, say so; with one, the session is not its own, or
    // not there: the same 404 either way.
    if inner.require_token {
        let token = token.ok_or(Refusal::Unauthorized(MISSING_CLIENT_TOKEN))?;
        if inner.client_auth.verify_client(token).is_none() {
            return Err(Refusal::Unauthorized(NOT_A_CLIENT_TOKEN));
        }
    }
    Err(Refusal::SessionNotFound)
}

/// The headers the standard path reads, each the first of its name (as `HeaderMap::get`
/// gives it), picked in one pass over the request's headers: a request carries a handful, and
/// comparing each name costs less than hashing the three custom names for a lookup apiece.
#[derive(Default)]
struct Picked<'a> {
    /// `Mcp-Session-Id`.
    session: Option<&'a HeaderValue>,
    authorization: Option<&'a HeaderValue>,
    accept: Option<&'a HeaderValue>,
    /// `MCP-Protocol-Version`.
    protocol_version: Option<&'a HeaderValue>,
}

impl<'a> Picked<'a> {
    fn from(headers: &'a HeaderMap) -> Self {
        let mut picked = Self::default();
        for (name, value) in headers {
            let slot = if name == header::AUTHORIZATION {
                &mut picked.authorization
            } else if name == header::ACCEPT {
                &mut picked.accept
            } else if name == MCP_SESSION_ID {
                &mut picked.session
            } else if name == PROTOCOL_VERSION {
                &mut picked.protocol_version
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        picked
    }
}

const MISSING_CLIENT_TOKEN: &str = "missing or empty `Authorization: Bearer <token>` header: \
     send a client token (`revka tokens create <name>`), or mint a session with POST /session \
     and send its token with X-Revka-Session";
const NOT_A_CLIENT_TOKEN: &str = "the bearer token is not a client token of this daemon (a \
     session's token needs X-Revka-Session; gateway tokens are not accepted here)";

/// 400 for a request the standard path cannot take without a session.
pub(crate) fn no_session(id: Option<&Id>, what: &str) -> Response {
    let message = format!(
        "no session: {what} needs Mcp-Session-Id; send initialize first (its answer carries \
         Mcp-Session-Id), or use X-Revka-Session"
    );
    rpc_error(StatusCode::BAD_REQUEST, id, NO_SESSION, &message)
}

/// Refused unless a present `MCP-Protocol-Version` is one Revka speaks.
fn check_protocol_version(version: Option<&HeaderValue>) -> Result<(), Refusal> {
    let Some(version) = version else {
        return Ok(());
    };
    let version = version.as_bytes();
    if SUPPORTED_PROTOCOL_VERSIONS
        .iter()
        .any(|v| v.as_bytes() == version)
    {
        return Ok(());
    }
    Err(Refusal::UnsupportedVersion(
        String::from_utf8_lossy(version).into_owned(),
    ))
}

/// What the SDK clients send: checked first, as one comparison.
const SDK_ACCEPT: &[u8] = b"application/json, text/event-stream";

/// Whether `Accept` (absent: anything) admits every type of `wanted`. Read as bytes, without
/// allocating: it is on every standard request.
fn accepts(accept: Option<&HeaderValue>, wanted: &[&str]) -> bool {
    let Some(accept) = accept.filter(|_| !wanted.is_empty()) else {
        return true;
    };
    let accept = accept.as_bytes();
    if accept == SDK_ACCEPT {
        return true;
    }
    wanted.iter().all(|wanted| {
        let wanted = wanted.as_bytes();
        let kind = wanted.split(|&b| b == b'/').next().unwrap_or_default();
        accept.split(|&b| b == b',').any(|range| {
            let range = range
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            range.eq_ignore_ascii_case(wanted)
                || range == b"*/*"
                || range
                    .strip_suffix(b"/*")
                    .is_some_and(|k| k.eq_ignore_ascii_case(kind))
        })
    })
}

/// Refused unless `Accept` admits `wanted` (module docs).
fn check_accept(
    accept: Option<&HeaderValue>,
    wanted: &'static [&'static str],
) -> Result<(), Refusal> {
    if accepts(accept, wanted) {
        Ok(())
    } else {
        Err(Refusal::NotAcceptable(wanted))
    }
}

/// `initialize` without a session: creates one for `client` (rate-limited per source, like
/// `POST /session`), bound to its token, and answers with its id in `Mcp-Session-Id`.
pub(crate) async fn initialize(
    server: &McpServer,
    client: NewClient,
    request: RpcRequest,
    peer: Option<SocketAddr>,
) -> Response {
    let id = request.id;
    let params: Value = match request
        .params
        .as_deref()
        .map(|p| serde_json::from_str(p.get()))
    {
        None => Value::Null,
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            let message = format!("invalid params: {e}");
            return rpc_error(
                StatusCode::OK,
                Some(&id),
                ErrorObject::INVALID_PARAMS,
                &message,
            );
        }
    };
    if !params
        .get("protocolVersion")
        .is_some_and(serde_json::Value::is_string)
    {
        return rpc_error(
            StatusCode::OK,
            Some(&id),
            ErrorObject::INVALID_PARAMS,
            "initialize needs params.protocolVersion (a string)",
        );
    }
    let inner = &server.inner;
    // Without a token (`require_token = false`) the caller's user is the credential.
    if client.grant.is_none()
        && let Some(refused) = peer.and_then(super::peer_user::refuse_other_user)
    {
        return rpc_error(
            StatusCode::FORBIDDEN,
            Some(&id),
            ErrorObject::INVALID_REQUEST,
            &refused,
        );
    }
    // Without a client address (only in-process, never on the listener) the caller is local.
    let source = peer.map_or(Source::Loopback, |peer| Source::from(peer.ip()));
    if let Err(wait) = inner.creations.take(source) {
        tracing::debug!(%source, "initialize refused: too many sessions created from one source");
        let message = format!(
            "too many sessions created from this client; retry in {}s",
            whole_secs(wait)
        );
        let refused = rpc_error(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&id),
            NO_SESSION,
            &message,
        );
        return retry_after(refused, wait);
    }
    // A label for introspection: what the client calls itself.
    let label = params
        .pointer("/clientInfo/name")
        .and_then(Value::as_str)
        .map(|name| name.chars().take(200).collect::<String>());
    let owner = client.grant.as_ref().map_or("local", |g| g.id.as_str());
    let new = NewSession {
        cwd: inner.default_cwd.clone(),
        label,
        scope: client.grant.as_ref().and_then(|g| g.scope.clone()),
        client: Some(ClientBinding {
            owner: owner.into(),
            credential: client.credential,
            expires_at: client.grant.as_ref().and_then(|g| g.expires_at),
        }),
    };
    let session = match inner.sessions.create(new).await {
        Ok((session, _)) => session,
        Err(e) => {
            let wait = match &e {
                SessionError::Full { retry_after, .. } => Some(*retry_after),
                _ => None,
            };
            let refused = rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&id),
                NO_SESSION,
                &e.to_string(),
            );
            return match wait {
                Some(wait) => retry_after(refused, wait),
                None => refused,
            };
        }
    };
    tracing::info!(
        session = %session.id(),
        client = session.client(),
        grant = client.grant.as_ref().map(|g| g.name.as_str()),
        "session created by a standard initialize"
    );
    let mut response = rpc_result(&id, &rpc::initialize(server, &session, &params));
    if let Ok(value) = HeaderValue::from_str(session.id()) {
        response.headers_mut().insert(MCP_SESSION_ID, value);
    }
    response
}

/// `DELETE /mcp`: ends the caller's session (either path), 204.
pub(crate) async fn mcp_delete(State(server): State<McpServer>, headers: HeaderMap) -> Response {
    match caller(&server, &headers, NO_ANSWER) {
        Ok(Caller::Session(session)) => {
            server
                .inner
                .sessions
                .end(session.id(), "ended by the client (DELETE /mcp)");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Caller::New(_)) => no_session(None, "DELETE /mcp"),
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_accept(value: &str) -> Option<HeaderValue> {
        Some(HeaderValue::from_str(value).unwrap())
    }

    #[test]
    fn accept_must_admit_every_answer_type() {
        let both = ["application/json", "text/event-stream"];
        assert!(accepts(None, &both), "absent: anything");
        for ok in [
            "application/json, text/event-stream",
            "text/event-stream;q=0.9, Application/JSON",
            "*/*",
            "application/*, text/*",
        ] {
            assert!(accepts(with_accept(ok).as_ref(), &both), "{ok}");
        }
        for bad in ["application/json", "text/event-stream", "text/html", ""] {
            assert!(!accepts(with_accept(bad).as_ref(), &both), "{bad}");
        }
        assert!(accepts(
            with_accept("text/event-stream").as_ref(),
            &both[1..]
        ));
    }
}
