//! The gateway's own routes: pairing and tokens (gateway and client tokens), introspection of
//! the supervision tree
//! (`/api/actors`), `/api/health`, `/metrics`, `/api/reload`.
//!
//! Introspection hides the MCP sessions and the Code tab's terminals from every role but
//! `owner`: session ids are the handles of other people's sessions, labels name their work,
//! and a terminal's details name its session, command and directory. A viewer or operator
//! sees the `sessions` and `terminals` supervisors with a count and no children, and a path
//! below them is answered as an unknown one (`404 no actor at ...`), so ids cannot be probed.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use revka_actors::Snapshot;
use revka_actors::metrics::CONTENT_TYPE;
use revka_actors::supervisor::{RestartPathError, restart_path};
use serde::Deserialize;
use serde_json::{Value, json};

use super::server::{Caller, Gateway};
use crate::auth::{DEFAULT_PAIRING_TTL, PairError, RevokeError, Role, StoreError, ToolScope};
use crate::http::response::error;

/// The supervisors whose children only the owner sees (MCP sessions and terminals), and the
/// count each shows the others.
const OWNER_ONLY: [(&str, &str); 2] = [
    ("root/sessions", "sessions"),
    ("root/terminals", "terminals"),
];

/// Whether the node at `path` is one only the owner sees: a child (or deeper) of a supervisor
/// of [`OWNER_ONLY`]. Also the rule of the event log (`events`).
pub(super) fn owner_only(path: &str) -> bool {
    OWNER_ONLY.iter().any(|(sup, _)| {
        path.strip_prefix(sup)
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// `POST /pair`: trades the one-time code in `X-Pairing-Code` for a bearer token of the role
/// the code was minted for. `X-Pairing-Label` names the device (default `paired device`).
/// A wrong code is answered after the failure delay of its source.
pub(super) async fn pair(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let Some(code) = header("x-pairing-code") else {
        return error(StatusCode::BAD_REQUEST, "missing X-Pairing-Code header");
    };
    let label = header("x-pairing-label").unwrap_or("paired device");
    match gw.services().pairing.redeem(code, label) {
        Ok(redeemed) => {
            tracing::info!(label, role = %redeemed.role, "device paired");
            Json(json!({ "token": redeemed.token, "label": label, "role": redeemed.role }))
                .into_response()
        }
        Err(PairError::Store(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => {
            if matches!(e, PairError::Invalid | PairError::Burned)
                && let Err(response) = gw.failed_attempt(peer.ip()).await
            {
                return *response;
            }
            error(StatusCode::UNAUTHORIZED, format!("pairing failed: {e}"))
        }
    }
}

/// The body of `POST /api/pair/code` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PairCodeRequest {
    /// The role of the token the code is traded for; default `viewer`.
    #[serde(default)]
    role: Role,
}

/// `POST /api/pair/code`: a fresh one-time pairing code (for `revka pair`), for a token of
/// the body's `role` (`{"role": "operator"}`; no body: `viewer`).
pub(super) async fn pair_code(State(gw): State<Gateway>, body: Bytes) -> Response {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        PairCodeRequest::default()
    } else {
        match serde_json::from_slice::<PairCodeRequest>(&body) {
            Ok(request) => request,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "invalid body: {e} (expected {{\"role\": \"viewer\" | \"operator\" | \"owner\"}})"
                    ),
                );
            }
        }
    };
    let role = request.role;
    let code = gw.services().pairing.issue_for(role, DEFAULT_PAIRING_TTL);
    tracing::info!(%role, "pairing code issued");
    Json(json!({
        "code": code,
        "role": role,
        "expires_in_secs": DEFAULT_PAIRING_TTL.as_secs(),
    }))
    .into_response()
}

/// `GET /api/tokens`.
pub(super) async fn tokens(State(gw): State<Gateway>) -> Response {
    Json(gw.services().tokens.list()).into_response()
}

/// The body of `POST /api/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClientToken {
    /// Who holds it (a label, as for paired tokens).
    name: String,
    /// Its tool scope; absent or `null`: every tool.
    #[serde(default)]
    tools: Option<Vec<String>>,
    /// Its lifetime in seconds; absent or `null`: it never expires.
    #[serde(default)]
    expires_secs: Option<u64>,
}

/// What `POST /api/tokens` expects, for its 400s.
const NEW_CLIENT_TOKEN_SHAPE: &str =
    r#"{"name": "<label>", "tools": ["<pattern>", ...] (optional), "expires_secs": N (optional)}"#;

/// `POST /api/tokens`: a new client token for the MCP server's standard flow. 201 with the
/// token as `GET /api/tokens` lists it (`id`, `label`, `kind`, `tools`, `expires_at`, ...)
/// plus `token`, the only time it is shown, and `mcp_url`, the MCP endpoint of `mcp.json`
/// (`null` while it is not bound). 400 for an invalid name, scope or lifetime; 409 when the
/// store is full of live tokens.
pub(super) async fn create_token(State(gw): State<Gateway>, body: Bytes) -> Response {
    if body.iter().all(u8::is_ascii_whitespace) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("missing body: expected {NEW_CLIENT_TOKEN_SHAPE}"),
        );
    }
    let request = match serde_json::from_slice::<NewClientToken>(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid body: {e} (expected {NEW_CLIENT_TOKEN_SHAPE})"),
            );
        }
    };
    let scope = match request.tools.map(ToolScope::new).transpose() {
        Ok(scope) => scope,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let expires_in = request.expires_secs.map(std::time::Duration::from_secs);
    let services = gw.services();
    match services
        .tokens
        .issue_client(&request.name, scope.clone(), expires_in)
    {
        Ok(new) => {
            tracing::info!(id = %new.id, name = request.name.trim(), tools = ?scope.as_ref().map(ToolScope::patterns), "client token created");
            let info = services.tokens.list().into_iter().find(|t| t.id == new.id);
            let Some(Value::Object(mut body)) = info.and_then(|i| serde_json::to_value(i).ok())
            else {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("client token {} was created but is gone", new.id),
                );
            };
            let mcp_url = crate::http::discovery::read_discovery_file(
                &services.home.join(crate::http::discovery::DISCOVERY_FILE),
            )
            .map(|d| d.url);
            body.insert("token".into(), Value::String(new.token));
            body.insert("mcp_url".into(), json!(mcp_url));
            (StatusCode::CREATED, Json(Value::Object(body))).into_response()
        }
        Err(e @ (StoreError::InvalidLabel { .. } | StoreError::InvalidExpiry { .. })) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e @ StoreError::Full) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `DELETE /api/tokens/{id}`. A client token's sessions end with it: they compare each
/// request with the token they were opened with, not with the store.
pub(super) async fn revoke(State(gw): State<Gateway>, Path(id): Path<String>) -> Response {
    let services = gw.services();
    match services.tokens.revoke(&id) {
        Ok(info) => {
            let ended = services
                .sessions
                .end_bound_to(info.id.as_str(), "its client token was revoked");
            if ended > 0 {
                tracing::info!(token = %info.id, sessions = ended, "ended the sessions of a revoked client token");
            }
            Json(info).into_response()
        }
        Err(e @ RevokeError::Unknown(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ (RevokeError::Ambiguous { .. } | RevokeError::AlreadyRevoked(_))) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e @ RevokeError::InvalidPrefix(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Whether `caller` may see the node at `path` (a full path): everything for the owner, all
/// but the sessions and terminals themselves for the others.
fn visible(caller: &Caller, path: &str) -> bool {
    caller.role == Role::Owner || !owner_only(path)
}

/// `snapshot` as `caller` may see it: for a non-owner, the sessions and terminals supervisors
/// keep a count of their children and lose the children.
fn redacted(caller: &Caller, mut snapshot: Snapshot) -> Snapshot {
    fn redact(node: &mut Snapshot) {
        if let Some((_, what)) = OWNER_ONLY.iter().find(|(sup, _)| node.path == *sup) {
            let count = node.children.len();
            node.children.clear();
            let mut details = match node.details.take() {
                Some(Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            details.insert((*what).into(), json!(count));
            details.insert(
                "redacted".into(),
                json!(format!(
                    "the {what} themselves are shown to the owner role only"
                )),
            );
            node.details = Some(Value::Object(details));
        } else {
            node.children.iter_mut().for_each(redact);
        }
    }
    if caller.role != Role::Owner {
        redact(&mut snapshot);
    }
    snapshot
}

/// `GET /api/actors`: the whole supervision tree (sessions redacted below the owner role).
pub(super) async fn actors(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
) -> Json<Snapshot> {
    Json(redacted(&caller, gw.services().status_root.snapshot()))
}

/// `GET /api/actors/{path}`: one actor with its details and children.
pub(super) async fn actor(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<String>,
) -> Response {
    match gw.services().status_root.find(&path) {
        Some(node) if visible(&caller, node.path()) => {
            Json(redacted(&caller, node.snapshot())).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, format!("no actor at `{path}`")),
    }
}

/// `POST /api/actors/{path}/restart`: restarts one child (also a `failed` one).
pub(super) async fn restart(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<String>,
) -> Response {
    let Some(path) = path.strip_suffix("/restart") else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no route POST /api/actors/{path} (did you mean .../restart?)"),
        );
    };
    let root = gw.services().status_root.clone();
    if root
        .find(path)
        .is_some_and(|node| !visible(&caller, node.path()))
    {
        let hidden = RestartPathError::NotFound(path.trim_matches('/').to_owned());
        return error(StatusCode::NOT_FOUND, hidden.to_string());
    }
    // Bounded by the router's default timeout.
    match restart_path(&root, path).await {
        Ok(()) => Json(json!({ "restarted": path })).into_response(),
        Err(e @ RestartPathError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ RestartPathError::Refused { .. }) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/health`: `healthy | degraded | unhealthy` (503 when unhealthy).
pub(super) async fn health(State(gw): State<Gateway>) -> Response {
    let (status, mut body) = crate::health::report(&gw.services().status_root);
    body["sessions"] = json!(gw.services().sessions.len());
    let code = if status == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text exposition.
pub(super) async fn metrics(State(gw): State<Gateway>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        gw.services().telemetry.render(),
    )
        .into_response()
}

/// `POST /api/reload`: re-reads the config file and applies the difference (as SIGHUP does),
/// after any reload already running. 200 with the report once the reload is done, or 422 when
/// the file is invalid (nothing changed). The body is ignored, but capped like every other
/// (413 past 64 KiB, before anything is reloaded).
///
/// The reload runs in its own task: a client that disconnects or times out cannot cancel it
/// halfway (a server stopped but not yet restarted). It is waited for up to
/// [`crate::reload::RELOAD_WAIT`], not the default request timeout: stopping a server that
/// ignores SIGTERM takes its whole shutdown timeout.
pub(super) async fn reload(State(gw): State<Gateway>) -> Response {
    let services = gw.services().clone();
    let task = tokio::spawn(async move { crate::reload::reload(&services).await });
    match tokio::time::timeout(crate::reload::RELOAD_WAIT, task).await {
        Ok(Ok(Ok(report))) => Json(report).into_response(),
        Ok(Ok(Err(e))) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid configuration; nothing changed: {e}"),
        ),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the reload failed: {e}"),
        ),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the reload is still running after {} s; it carries on (its report goes to \
                 the log and GET /api/actors/root)",
                crate::reload::RELOAD_WAIT.as_secs()
            ),
        ),
    }
}

/// `GET /api/whoami`: the caller's own token, as the dashboard shows it: `{"id", "label",
/// "role", "kind", "file_token"}` (`file_token`: it is the owner token of
/// `$REVKA_HOME/gateway.token`, which `POST /api/logout` cannot revoke).
pub(super) async fn whoami(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match own_token(&gw, &caller) {
        Some(info) => Json(json!({
            "id": info.id,
            "label": info.label,
            "role": caller.role,
            "kind": info.kind,
            "file_token": info.file_token,
        }))
        .into_response(),
        None => gone(&caller),
    }
}

/// `POST /api/logout`: revokes the caller's own token (signing out of the dashboard); 200
/// `{"revoked": id}`. The owner token of `$REVKA_HOME/gateway.token` is refused with 409: the
/// CLI of the daemon's account uses it, and the next daemon start replaces it anyway; a
/// browser holding it just forgets it.
pub(super) async fn logout(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let Some(info) = own_token(&gw, &caller) else {
        return gone(&caller);
    };
    if info.file_token {
        return error(
            StatusCode::CONFLICT,
            "the owner token of $REVKA_HOME/gateway.token is not revoked by signing out (the \
             CLI uses it; the next daemon start replaces it): forget it in the browser, or \
             revoke a paired token with `revka tokens revoke <id>`",
        );
    }
    match gw.services().tokens.revoke(info.id.as_str()) {
        Ok(info) => {
            tracing::info!(token = %info.id, label = %info.label, "signed out: token revoked");
            Json(json!({ "revoked": info.id })).into_response()
        }
        // Revoked meanwhile by another request: signed out all the same.
        Err(RevokeError::AlreadyRevoked(id)) => Json(json!({ "revoked": id })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The caller's token as the store lists it.
fn own_token(gw: &Gateway, caller: &Caller) -> Option<crate::auth::TokenInfo> {
    gw.services()
        .tokens
        .list()
        .into_iter()
        .find(|t| t.id == caller.id)
}

/// The answer when the caller's token left the store between authentication and the handler.
fn gone(caller: &Caller) -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        format!(
            "unauthorized: token {} is no longer in the store",
            caller.id
        ),
    )
}
