//! `POST /mcp` (JSON-RPC dispatch), `POST /session`, `DELETE /session/{id}`, and the
//! two-header auth. Which path a `/mcp` request takes, and the standard path's own rules, are
//! in `standard`.
//!
//! A request's id is never made a `Value`: every answer, and `notifications/cancelled`
//! matching, uses it as the client wrote it ([`Id`]), so a 60-digit or `1.0` id comes back as
//! sent, not as a double.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use revka_actors::session::{
    ClientCapabilities, NewSession as SessionOptions, Session, SessionError,
};
use revka_mcp::jsonrpc::{ErrorObject, Id, Incoming, parse_message};
use revka_mcp::protocol::{self, SUPPORTED_PROTOCOL_VERSIONS};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::guard::{rpc_error, rpc_result};
use super::standard::{self, Caller};
use super::{BASE_PROTOCOL_VERSION, MAX_MCP_BODY, McpServer, call, logging, surface};
use crate::http::Source;
use crate::http::response::{error, json_response};

/// The session header of the two-header auth.
/// (A `HeaderName`, not a `&str`: a `&str` key is parsed again on every lookup.)
pub(crate) const SESSION_HEADER: header::HeaderName =
    header::HeaderName::from_static("x-revka-session");

/// The bearer token of an `Authorization` header, if well formed and non-empty.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    crate::http::bearer::extract_bearer_bytes(headers.get(header::AUTHORIZATION)?.as_bytes())
}

/// 401 with a JSON-RPC error and `WWW-Authenticate: Bearer`.
pub(crate) fn unauthorized(message: &str) -> Response {
    let mut response = rpc_error(
        StatusCode::UNAUTHORIZED,
        None,
        -32001,
        &format!("unauthorized: {message}"),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// The two-header auth, given the request's `X-Revka-Session` value: both headers present and
/// non-empty, naming a live session whose token matches (constant-time). No mailbox is
/// involved. `Err` is the reason for a 401.
pub(crate) fn authenticate(
    server: &McpServer,
    headers: &HeaderMap,
    session_id: &header::HeaderValue,
) -> Result<Arc<Session>, &'static str> {
    let token = bearer(headers).ok_or("missing or empty `Authorization: Bearer <token>` header")?;
    let session_id = session_id.as_bytes().trim_ascii();
    if session_id.is_empty() {
        return Err("missing or empty `X-Revka-Session` header");
    }
    // Ids are hex: anything else names no session.
    let session_id = std::str::from_utf8(session_id)
        .map_err(|_| "unknown or expired session, or wrong token")?;
    server
        .inner
        .sessions
        .authenticate(session_id, token)
        .ok_or("unknown or expired session, or wrong token")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let mime = v
            .as_bytes()
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default();
        mime.trim_ascii().eq_ignore_ascii_case(b"application/json")
    })
}

/// `POST /mcp`. The request is taken whole: its headers are read in place (the `HeaderMap`
/// extractor would copy them), checked (auth, content type) before any of the body is read,
/// and the body is capped here, at [`MAX_MCP_BODY`]. `peer` is the client's address (a
/// standard `initialize` is rate-limited per source).
pub(crate) async fn mcp_post(
    server: McpServer,
    request: Request,
    peer: Option<SocketAddr>,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let caller = match standard::caller(&server, headers, standard::POST_ANSWERS) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    if !is_json(headers) {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            ErrorObject::INVALID_REQUEST,
            "Content-Type must be application/json",
        );
    }
    let body = match axum::body::to_bytes(body, MAX_MCP_BODY).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|inner| inner.is::<http_body_util::LengthLimitError>());
            if too_large {
                let message = format!("request body exceeds {} MiB", MAX_MCP_BODY >> 20);
                return rpc_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    ErrorObject::INVALID_REQUEST,
                    &message,
                );
            }
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                ErrorObject::INVALID_REQUEST,
                &format!("cannot read the request body: {e}"),
            );
        }
    };
    let message = match parse_message(&body) {
        Ok(m) => m,
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, None, e.code(), &e.to_string()),
    };
    match caller {
        Caller::Session(session) => answer(server, session, message).await,
        Caller::New(client) => match message {
            Incoming::Request(req) if req.method == "initialize" => {
                standard::initialize(&server, client, req, peer).await
            }
            Incoming::Request(req) => standard::no_session(Some(&req.id), &req.method),
            Incoming::Notification(n) => standard::no_session(None, &n.method),
            Incoming::Response(_) => standard::no_session(None, "a response"),
        },
    }
}

/// Answers a JSON-RPC message of `session`'s client.
async fn answer(server: McpServer, session: Arc<Session>, message: Incoming) -> Response {
    match message {
        Incoming::Request(req) => {
            // Kept as sent and echoed byte for byte (`jsonrpc::Id`), never made a `Value`.
            let id = req.id;
            if req.method == "tools/call" {
                // Its arguments stay raw: most are forwarded as they came.
                return call::tools_call(server, session, id, req.params.as_deref()).await;
            }
            let params: Value = match req.params.as_deref().map(|p| serde_json::from_str(p.get())) {
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
            match req.method.as_ref() {
                "initialize" => rpc_result(&id, &initialize(&server, &session, &params)),
                "ping" => rpc_result(&id, &json!({})),
                "tools/list" => {
                    let registry = &server.inner.registry;
                    session.note_listed(registry.hub().tools().version);
                    rpc_result(&id, &json!({ "tools": registry.list(&session) }))
                }
                "logging/setLevel" => logging::set_level(&server, &session, &id, &params),
                m if surface::handles(m) => {
                    surface::answer(&server, &session, &id, m, &params).await
                }
                other => rpc_error(
                    StatusCode::OK,
                    Some(&id),
                    ErrorObject::METHOD_NOT_FOUND,
                    &format!("method not found: {other}"),
                ),
            }
        }
        Incoming::Notification(n) => {
            if n.method == "notifications/cancelled" {
                let request_id = n.params.as_deref().and_then(cancelled_request_id);
                if let Some(request_id) = request_id {
                    let cancelled = session.cancel_call(&request_id.key());
                    tracing::debug!(session = %session.id(), %request_id, cancelled, "client cancelled a call");
                }
            }
            StatusCode::ACCEPTED.into_response()
        }
        // The client's answer to a request an upstream server sent it through Revka.
        Incoming::Response(resp) => {
            let answered = session.client_side().answer(resp.id.as_ref(), resp.result);
            if !answered {
                tracing::debug!(session = %session.id(), id = ?resp.id, "client answer matches no waiting request (wrong id, a repeat, or after its call ended); ignored");
            }
            StatusCode::ACCEPTED.into_response()
        }
    }
}

/// The `requestId` of `notifications/cancelled` params, if it is a string or a number; matched
/// against calls in flight by [`Id::key`], as `tools/call` registers them.
fn cancelled_request_id(params: &RawValue) -> Option<Id> {
    #[derive(Deserialize)]
    struct Cancelled<'a> {
        #[serde(borrow, default, rename = "requestId")]
        request_id: Option<&'a RawValue>,
    }
    let cancelled: Cancelled<'_> = serde_json::from_str(params.get()).ok()?;
    Id::from_json(cancelled.request_id?)
}

/// The `initialize` result for `session`: the version negotiated from the client's,
/// `tools.listChanged`, and instructions naming only its in-scope tools. A client declaring
/// federation (`capabilities.experimental.revka.federation`) marks the session federated
/// ([`Session::set_federated`]) and is answered with the same capability.
pub(super) fn initialize(server: &McpServer, session: &Session, params: &Value) -> Value {
    let asked = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = if SUPPORTED_PROTOCOL_VERSIONS.contains(&asked) {
        asked
    } else {
        BASE_PROTOCOL_VERSION
    };
    // What the client can do for servers: relayed sampling and elicitation need it declared.
    session
        .client_side()
        .set_capabilities(ClientCapabilities::of(params.get("capabilities")));
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": { "listChanged": true },
            "resources": { "subscribe": true, "listChanged": true },
            "prompts": { "listChanged": true },
            "completions": {},
            "logging": {},
        },
        "serverInfo": { "name": "revka-mcp", "version": env!("CARGO_PKG_VERSION") },
    });
    // Another Revka federating this one: it defers on its own side, so it is served every
    // tool of its scope, and told so.
    if params
        .get("capabilities")
        .is_some_and(protocol::declares_federation)
    {
        session.set_federated();
        result["capabilities"]["experimental"] = protocol::federation_capability();
        tracing::info!(session = %session.id(), "session opened by a federating Revka: no deferred loading");
    }
    if let Some(instructions) = server.inner.registry.instructions(session) {
        result["instructions"] = Value::String(instructions);
    }
    result
}

/// Any method of `/mcp` but `GET`, `POST` and `DELETE`.
pub(crate) async fn mcp_method_not_allowed() -> Response {
    let mut response = rpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        ErrorObject::INVALID_REQUEST,
        "method not allowed: /mcp takes POST (JSON-RPC), GET (the session's stream) and DELETE \
         (end the session)",
    );
    response.headers_mut().insert(
        header::ALLOW,
        header::HeaderValue::from_static("GET, POST, DELETE"),
    );
    response
}

#[derive(Deserialize)]
struct NewSession {
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    label: Option<String>,
}

/// `POST /session`: rate-limited per source (429 past it); 503 when the table is full of
/// sessions that may not be evicted. Both with `Retry-After`.
pub(crate) async fn create_session(
    State(server): State<McpServer>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(refused) = peer
        .as_ref()
        .and_then(|Extension(ConnectInfo(peer))| super::peer_user::refuse_other_user(*peer))
    {
        return error(StatusCode::FORBIDDEN, refused);
    }
    // Without a client address (only in-process, never on the listener) the caller is local.
    let source = peer.map_or(Source::Loopback, |Extension(ConnectInfo(peer))| {
        Source::from(peer.ip())
    });
    if let Err(wait) = server.inner.creations.take(source) {
        tracing::debug!(%source, "POST /session refused: too many from one source");
        return retry_after(
            error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many sessions created from this client; retry in {}s",
                    whole_secs(wait)
                ),
            ),
            wait,
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                e.status(),
                format!("cannot read the body: {}", e.body_text()),
            );
        }
    };
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        NewSession {
            cwd: None,
            label: None,
        }
    } else {
        if !is_json(&headers) {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            );
        }
        match serde_json::from_slice::<NewSession>(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid session request: {e}"),
                );
            }
        }
    };
    let cwd = match resolve_cwd(request.cwd.as_deref(), &server.inner.default_cwd) {
        Ok(cwd) => cwd,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if request
        .label
        .as_ref()
        .is_some_and(|l| l.chars().count() > 200)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "label is longer than 200 characters",
        );
    }
    let options = SessionOptions::new(cwd.clone()).with_label(request.label);
    match server.inner.sessions.create(options).await {
        Ok((session, token)) => json_response(
            StatusCode::OK,
            &json!({ "session_id": session.id(), "token": token, "cwd": &*cwd }),
        ),
        Err(
            e @ SessionError::Full {
                retry_after: wait, ..
            },
        ) => retry_after(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()), wait),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Whole seconds, rounded up, at least one: what `Retry-After` can say.
pub(super) fn whole_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// `response` with `Retry-After: <wait in whole seconds>`.
pub(super) fn retry_after(mut response: Response, wait: Duration) -> Response {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(whole_secs(wait)),
    );
    response
}

/// Tilde-expands and canonicalises a requested working directory, which must exist.
fn resolve_cwd(
    requested: Option<&str>,
    default: &Arc<std::path::Path>,
) -> Result<Arc<std::path::Path>, String> {
    let Some(raw) = requested.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(default.clone());
    };
    let expanded = match raw.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = std::env::var_os("HOME").ok_or("cannot expand `~`: HOME is not set")?;
            PathBuf::from(home).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(raw),
    };
    let canonical = expanded
        .canonicalize()
        .map_err(|e| format!("cwd {raw:?} does not exist or is not accessible: {e}"))?;
    if !canonical.is_dir() {
        return Err(format!("cwd {raw:?} is not a directory"));
    }
    Ok(canonical.into())
}

/// `DELETE /session/{id}` (Bearer token of that session).
pub(crate) async fn delete_session(
    State(server): State<McpServer>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let sessions = &server.inner.sessions;
    let authorized = bearer(&headers).and_then(|t| sessions.authenticate(&id, t));
    if authorized.is_none() {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized: unknown session or wrong token",
        );
    }
    sessions.end(&id, "ended by the client");
    StatusCode::NO_CONTENT.into_response()
}
