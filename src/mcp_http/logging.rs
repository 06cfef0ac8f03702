//! `logging/setLevel`: a session's client asks for the log messages of the servers at or above a
//! level. The session keeps it (`ClientSide::set_level`): its calls' messages are filtered by it,
//! and messages that relate to no call reach it only once it set one (`upstream`). The servers
//! are asked for the most verbose level any live session wants (`revka_actors::mcp::log_level`),
//! recomputed when a session sets a level and when such a session ends.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use revka_actors::session::Session;
use revka_mcp::jsonrpc::{ErrorObject, Id};
use revka_mcp::protocol::LogLevel;
use serde_json::{Value, json};

use super::McpServer;
use super::guard::{rpc_error, rpc_result};

/// Answers `logging/setLevel` for `session`.
pub(super) fn set_level(
    server: &McpServer,
    session: &Arc<Session>,
    id: &Id,
    params: &Value,
) -> Response {
    let Some(level) = params
        .get("level")
        .and_then(Value::as_str)
        .and_then(LogLevel::parse)
    else {
        let names: Vec<&str> = LogLevel::ALL.iter().map(|l| l.as_str()).collect();
        let message = format!(
            "logging/setLevel needs params.level, one of: {}",
            names.join(", ")
        );
        return rpc_error(
            StatusCode::OK,
            Some(id),
            ErrorObject::INVALID_PARAMS,
            &message,
        );
    };
    let first = session.client_side().level().is_none();
    session.client_side().set_level(level);
    tracing::debug!(session = %session.id(), level = level.as_str(), "client log level");
    want(server);
    if first {
        // When the session ends, the servers may go back to a quieter level.
        let (server, ended) = (server.clone(), session.ended().clone());
        tokio::spawn(async move {
            ended.cancelled().await;
            want(&server);
        });
    }
    rpc_result(id, &json!({}))
}

/// Asks the servers for the most verbose level a live session wants.
fn want(server: &McpServer) {
    let wanted = server
        .inner
        .sessions
        .all()
        .iter()
        .filter(|s| !s.ended().is_cancelled())
        .filter_map(|s| s.client_side().level())
        .min();
    let hub = server.inner.registry.hub();
    hub.log_level().want(wanted, &hub.servers());
}
