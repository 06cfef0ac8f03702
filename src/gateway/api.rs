//! The gateway's own routes: pairing and tokens, introspection of the supervision tree
//! (`/api/actors`), `/api/health`, and `/metrics`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use revka_actors::metrics::CONTENT_TYPE;
use revka_actors::supervisor::{RestartPathError, restart_path};
use revka_actors::{ActorState, Snapshot};
use serde_json::{Value, json};

use super::auth::{DEFAULT_PAIRING_TTL, PairError, RevokeError};
use super::server::{Gateway, error};

/// `POST /pair`: trades the one-time code in `X-Pairing-Code` for a bearer token.
/// `X-Pairing-Label` names the device (default `paired device`).
pub(super) async fn pair(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = gw.check_rate(peer.ip()) {
        return *response;
    }
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
        Ok(token) => {
            tracing::info!(label, "device paired");
            (
                StatusCode::OK,
                Json(json!({ "token": token, "label": label })),
            )
                .into_response()
        }
        Err(PairError::Store(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => {
            gw.auth_failed(peer.ip());
            error(StatusCode::UNAUTHORIZED, format!("pairing failed: {e}"))
        }
    }
}

/// `POST /api/pair/code`: a fresh one-time pairing code (for `revka pair`).
pub(super) async fn pair_code(State(gw): State<Gateway>) -> Response {
    let code = gw.services().pairing.issue(DEFAULT_PAIRING_TTL);
    Json(json!({ "code": code, "expires_in_secs": DEFAULT_PAIRING_TTL.as_secs() })).into_response()
}

/// `GET /api/tokens`.
pub(super) async fn tokens(State(gw): State<Gateway>) -> Response {
    Json(gw.services().tokens.list()).into_response()
}

/// `DELETE /api/tokens/{id}`.
pub(super) async fn revoke(State(gw): State<Gateway>, Path(id): Path<String>) -> Response {
    match gw.services().tokens.revoke(&id) {
        Ok(info) => Json(info).into_response(),
        Err(e @ RevokeError::Unknown(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ (RevokeError::Ambiguous { .. } | RevokeError::AlreadyRevoked(_))) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e @ RevokeError::InvalidPrefix(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/actors`: the whole supervision tree.
pub(super) async fn actors(State(gw): State<Gateway>) -> Json<Snapshot> {
    Json(gw.services().status_root.snapshot())
}

/// `GET /api/actors/{path}`: one actor with its details and children.
pub(super) async fn actor(State(gw): State<Gateway>, Path(path): Path<String>) -> Response {
    match gw.services().status_root.find(&path) {
        Some(node) => Json(node.snapshot()).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no actor at `{path}`")),
    }
}

/// `POST /api/actors/{path}/restart`: restarts one child (also a `failed` one).
pub(super) async fn restart(State(gw): State<Gateway>, Path(path): Path<String>) -> Response {
    let Some(path) = path.strip_suffix("/restart") else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no route POST /api/actors/{path} (did you mean .../restart?)"),
        );
    };
    let root = gw.services().status_root.clone();
    // Bounded by the router's default timeout.
    match restart_path(&root, path).await {
        Ok(()) => Json(json!({ "restarted": path })).into_response(),
        Err(e @ RestartPathError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ RestartPathError::Refused { .. }) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The health verdict over the status tree.
pub(crate) fn health_report(root: &revka_actors::StatusNode) -> (&'static str, Value) {
    let snapshot = root.snapshot();
    let component = |id: &str| snapshot.children.iter().find(|c| c.id == id);
    let states = |parent: Option<&Snapshot>| -> Vec<Value> {
        parent
            .map(|p| {
                p.children
                    .iter()
                    .map(|c| {
                        json!({
                            "name": c.id, "path": c.path, "state": c.state, "restarts": c.restarts,
                            "last_failure": c.last_failure,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let servers = states(component("mcp_servers"));
    let sidecars = states(component("sidecars"));
    let core_down = snapshot.state != ActorState::Running
        || component("mcp_http").is_none_or(|c| c.state != ActorState::Running);
    // A server configured with auto_connect = false sits `stopped`: that is not a problem.
    let unwell = |v: &Value| {
        matches!(
            v["state"].as_str(),
            Some("failed" | "backing_off" | "starting" | "stopping")
        )
    };
    let status = if core_down {
        "unhealthy"
    } else if servers.iter().chain(&sidecars).any(unwell) {
        "degraded"
    } else {
        "healthy"
    };
    let core: serde_json::Map<String, Value> = snapshot
        .children
        .iter()
        .map(|c| (c.id.clone(), json!(c.state)))
        .collect();
    (
        status,
        json!({ "status": status, "components": core, "mcp_servers": servers, "sidecars": sidecars }),
    )
}

/// `GET /api/health`: `healthy | degraded | unhealthy` (503 when unhealthy).
pub(super) async fn health(State(gw): State<Gateway>) -> Response {
    let (status, mut body) = health_report(&gw.services().status_root);
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
/// the file is invalid (nothing changed).
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
