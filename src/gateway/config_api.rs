//! The dashboard's config editor: `GET /api/config/servers`, `PUT` and `DELETE
//! /api/config/servers/{name}`, which read and write the `[[mcp.servers]]` entries of the
//! daemon's `config.toml` (comments and layout kept) and then reload.
//!
//! Part of `root/gateway`; owner-only routes (an entry names a command the daemon spawns).
//! The file is the one the daemon loads and reloads: its `--config` path, else
//! `$REVKA_HOME/config.toml`; a daemon running on the defaults without a file reports
//! `exists: false`, and the first write creates the file from the commented template.
//!
//! Every write is optimistic and serialised:
//! - the client sends back the `version` it read (`If-Match: "<version>"`, the SHA-256 of the
//!   file's bytes, or `"absent"`); without it the answer is 428;
//! - under one lock per daemon, the file is read, its version compared (409 with the current
//!   one when it differs: someone else edited the file, e.g. a second tab), the edit applied
//!   ([`ConfigFile::put_server`] / [`ConfigFile::remove_server`]), checked with the daemon's
//!   own loader and validator and written atomically ([`ConfigFile::commit_live`]); a refused
//!   edit is a 422 whose `error` starts `path:line:col:` and leaves the file byte for byte
//!   as it was;
//! - the lock is released and the live reload runs ([`crate::reload::reload`], as
//!   `POST /api/reload` does, waited for up to [`crate::reload::RELOAD_WAIT`]); the answer is
//!   `{"version": <new>, "reload": <report>}`, or `"reload": {"error": ...}` when the reload
//!   itself failed or is still running (the file is written either way).

use std::path::{Path as FsPath, PathBuf};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::server::Gateway;
use crate::config::edit::{ConfigFile, EditError, ServerEdit, fingerprint};
use crate::http::response::error;

/// Serialises the config editor's read-compare-write sequences.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The file the daemon loads and reloads, absolute.
fn config_path(gw: &Gateway) -> PathBuf {
    let path = gw
        .services()
        .config
        .path()
        .map(FsPath::to_path_buf)
        .unwrap_or_else(crate::config::default_config_path);
    std::path::absolute(&path).unwrap_or(path)
}

/// The response with `ETag: "<version>"`.
fn tagged(mut response: Response, version: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// `GET /api/config/servers`: the file's path, whether it exists, its version, and its
/// `[[mcp.servers]]` entries as written.
pub(super) async fn servers(State(gw): State<Gateway>) -> Response {
    let path = config_path(&gw);
    let file = match ConfigFile::open(&path) {
        Ok(file) => file,
        Err(e) => return refused(&e, None, None),
    };
    let body = json!({
        "path": path,
        "exists": file.existed(),
        "version": file.version(),
        "servers": file.server_entries(),
    });
    tagged(Json(body).into_response(), file.version())
}

/// `PUT /api/config/servers/{name}`: adds the entry (after the last one, turning `[mcp]
/// enabled` on unless the file sets it) or changes it in place, then reloads.
pub(super) async fn put_server(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let edit = match ServerEdit::from_json(&body) {
        Ok(edit) => edit,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid body: {e} (expected a JSON object of [[mcp.servers]] keys)"),
            );
        }
    };
    if let Some(given) = edit.name().filter(|n| *n != name) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the body names the server `{given}` but the path `{name}`; a rename is a \
                 DELETE of the old name and a PUT of the new one"
            ),
        );
    }
    write(&gw, &headers, &name, |file| {
        if file.put_server(&name, &edit)? {
            // As `revka mcp add`: a server added to a client that is off by default would do
            // nothing; an explicit `enabled = false` is left alone.
            file.enable_mcp_client()?;
        }
        Ok(())
    })
    .await
}

/// `DELETE /api/config/servers/{name}`: removes the entry (with the comments directly above
/// it), then reloads.
pub(super) async fn delete_server(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    write(&gw, &headers, &name, |file| file.remove_server(&name)).await
}

/// The version `If-Match` names: `"<version>"` (quotes optional, a weak `W/` ignored).
fn if_match(headers: &HeaderMap) -> Option<Result<String, ()>> {
    let value = headers.get(header::IF_MATCH)?;
    let Ok(value) = value.to_str() else {
        return Some(Err(()));
    };
    let value = value.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some(Ok(value.to_owned()))
}

/// The write sequence shared by `PUT` and `DELETE` (see the module docs).
async fn write(
    gw: &Gateway,
    headers: &HeaderMap,
    name: &str,
    change: impl FnOnce(&mut ConfigFile) -> Result<(), EditError>,
) -> Response {
    let expected = match if_match(headers) {
        None => {
            return error(
                StatusCode::PRECONDITION_REQUIRED,
                "missing If-Match: send the version GET /api/config/servers gave, as \
                 If-Match: \"<version>\"",
            );
        }
        Some(Err(())) => {
            return error(
                StatusCode::BAD_REQUEST,
                "If-Match is not a valid header value",
            );
        }
        Some(Ok(version)) => version,
    };
    let path = config_path(gw);
    let version = {
        let _serial = WRITES.lock().await;
        let mut file = match ConfigFile::open(&path) {
            Ok(file) => file,
            Err(e) => return refused(&e, None, None),
        };
        if file.version() != expected {
            let body = json!({
                "error": "config.toml changed since you loaded it (someone else edited it); \
                          reload the editor",
                "version": file.version(),
            });
            return tagged(
                (StatusCode::CONFLICT, Json(body)).into_response(),
                file.version(),
            );
        }
        if let Err(e) = change(&mut file) {
            return refused(&e, Some(&file), Some(name));
        }
        if let Err(e) = file.commit_live(&crate::config::process_env, Some(name)) {
            return refused(&e, Some(&file), Some(name));
        }
        tracing::info!(server = %name, file = %path.display(), "config.toml edited through the gateway");
        fingerprint(Some(file.render().as_bytes()))
    };
    let reload = reload(gw).await;
    tagged(
        Json(json!({ "version": version, "reload": reload })).into_response(),
        &version,
    )
}

/// Runs the live reload in its own task (a client that leaves cannot cancel it halfway),
/// waited for up to [`crate::reload::RELOAD_WAIT`]: its report, or `{"error": ...}`.
async fn reload(gw: &Gateway) -> Value {
    let services = gw.services().clone();
    let task = tokio::spawn(async move { crate::reload::reload(&services).await });
    match tokio::time::timeout(crate::reload::RELOAD_WAIT, task).await {
        Ok(Ok(Ok(report))) => serde_json::to_value(report)
            .unwrap_or_else(|e| json!({ "error": format!("cannot show the report: {e}") })),
        Ok(Ok(Err(e))) => json!({
            "error": format!("the file was written but the reload refused it; nothing changed: {e}")
        }),
        Ok(Err(e)) => json!({ "error": format!("the reload failed: {e}") }),
        Err(_) => json!({
            "error": format!(
                "the reload is still running after {} s; it carries on (its report goes to the \
                 log and GET /api/actors/root)",
                crate::reload::RELOAD_WAIT.as_secs()
            )
        }),
    }
}

/// The answer to a refused edit (the file untouched): 404 for an unknown server, 422 with a
/// located reason for an edit that would not load, 500 for I/O.
fn refused(e: &EditError, file: Option<&ConfigFile>, server: Option<&str>) -> Response {
    let status = match e {
        EditError::NotFound { .. } => StatusCode::NOT_FOUND,
        EditError::Read { .. } | EditError::Write { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let message = match e {
        // Already `file:line:col: key: message`.
        EditError::InvalidServer { reason, .. } => reason.clone(),
        EditError::Invalid(inner) if inner.location().and_then(|l| l.line_col).is_some() => {
            inner.to_string()
        }
        // No position: point at the entry's table.
        EditError::Invalid(inner) => {
            let at = file
                .zip(server)
                .and_then(|(f, s)| Some((f.path().display().to_string(), f.locate_server(s)?)));
            match at {
                Some((path, (line, col))) => format!("{path}:{line}:{col}: {inner}"),
                None => inner.to_string(),
            }
        }
        other => other.to_string(),
    };
    let mut body = json!({ "error": message });
    if status == StatusCode::UNPROCESSABLE_ENTITY
        && let Some(server) = server
    {
        body["server"] = server.into();
    }
    (status, Json(body)).into_response()
}
