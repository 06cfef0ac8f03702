//! Resources, prompts and completion for a session's client: the MCP server side of what the
//! hub aggregates from every upstream server (`resources/list`, `resources/templates/list`,
//! `resources/read`, `resources/subscribe`, `resources/unsubscribe`, `prompts/list`,
//! `prompts/get`, `completion/complete`).
//!
//! Part of the MCP server (`root/mcp_http`); `rpc` hands it every method [`handles`] says is its.
//! Requests go to the owning server through the hub ([`McpHub`]): routed by prompt name or
//! resource URI, failing fast while the server restarts, bounded by its `tool_timeout`; the
//! server's result is passed through, but for the URIs at `contents[].uri` of a `resources/read`
//! that clients see in the explicit form (`revka://<server>/<uri>`), which are shown so. A
//! server's own JSON-RPC error reaches the client as the server sent it.
//!
//! **Lists** are aggregated over every server and paged, [`PAGE`] entries a page. A cursor is
//! opaque to clients (today `<list>.<offset>`); one that is not of that list, or points past
//! its end, is `-32602`. Deferred loading (`tool_search`) applies to tools only: resources and
//! prompts are always listed.
//!
//! **Scope.** A session opened with a scoped client token sees a prompt when its scope allows
//! the prompt's exposed name (`fs__*` allows the prompts of `fs` as it allows its tools), and
//! the resources and templates of a server when one of its patterns could match a tool of that
//! server ([`scope_names_server`]: `fs__*`, `fs__read_file`, `*`). What a session cannot see is
//! unknown to it on every method: `-32602` for a prompt, `-32002` for a resource; a bare prompt
//! name resolves among the prompts it sees.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use revka_actors::mcp::hub::{
    McpHub, RESOURCE_NOT_FOUND, ResourceRoute, ServerEntry, SurfaceError, UriRoute,
    scope_names_server,
};
use revka_actors::session::Session;
use revka_mcp::client::CallError;
use revka_mcp::jsonrpc::{self, ErrorObject, Id};
use serde_json::{Value, json};

use super::McpServer;
use super::guard::rpc_result;

/// Entries per page of `resources/list`, `resources/templates/list` and `prompts/list`.
pub(super) const PAGE: usize = 100;

/// Whether `method` is answered here.
pub(super) fn handles(method: &str) -> bool {
    matches!(
        method,
        "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "prompts/list"
            | "prompts/get"
            | "completion/complete"
    )
}

/// Answers `method` (one [`handles`] takes) of `session`'s client.
pub(super) async fn answer(
    server: &McpServer,
    session: &Arc<Session>,
    id: &Id,
    method: &str,
    params: &Value,
) -> Response {
    let hub = server.inner.registry.hub();
    let answer = match method {
        "resources/list" => list(hub, session, params, List::Resources),
        "resources/templates/list" => list(hub, session, params, List::Templates),
        "prompts/list" => list(hub, session, params, List::Prompts),
        "resources/read" => read(hub, session, params).await,
        "resources/subscribe" => subscribe(hub, session, params, true).await,
        "resources/unsubscribe" => subscribe(hub, session, params, false).await,
        "prompts/get" => get_prompt(hub, session, params).await,
        "completion/complete" => complete(hub, session, params).await,
        other => Err(ErrorObject::method_not_found(other)),
    };
    match answer {
        Ok(result) => rpc_result(id, &result),
        Err(error) => {
            let line = jsonrpc::Response::error(Some(id.clone()), error).to_line();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from(line),
            )
                .into_response()
        }
    }
}

/// The paged lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Resources,
    Templates,
    Prompts,
}

impl List {
    /// The result's field, and the cursor's prefix.
    fn field(self) -> &'static str {
        match self {
            Self::Resources => "resources",
            Self::Templates => "resourceTemplates",
            Self::Prompts => "prompts",
        }
    }
}

/// One page of a list, as `session` may see it.
fn list(
    hub: &McpHub,
    session: &Session,
    params: &Value,
    which: List,
) -> Result<Value, ErrorObject> {
    let cursor = match params.get("cursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c.as_str()),
        Some(_) => return Err(ErrorObject::invalid_params("cursor must be a string")),
    };
    let table = hub.surface();
    let entries: Vec<&Value> = match which {
        List::Resources => visible(session, &table.resources),
        List::Templates => visible(session, &table.templates),
        List::Prompts => table
            .prompts
            .values()
            .filter(|p| session.in_scope(&p.name))
            .map(|p| &*p.def)
            .collect(),
    };
    let (page, next) = page(&entries, cursor, which.field())?;
    let mut result = json!({ which.field(): page });
    if let Some(next) = next {
        result["nextCursor"] = Value::String(next);
    }
    Ok(result)
}

/// The definitions of the routes whose server `session` may see.
fn visible<'a>(session: &Session, routes: &'a [Arc<ResourceRoute>]) -> Vec<&'a Value> {
    routes
        .iter()
        .filter(|r| sees_server(session, &r.server))
        .map(|r| &*r.def)
        .collect()
}

/// Whether `session` may see the resources of `server` (module docs, "Scope").
fn sees_server(session: &Session, server: &ServerEntry) -> bool {
    session
        .scope()
        .is_none_or(|scope| scope_names_server(scope.patterns(), &server.spec().name))
}

/// The page of `entries` that `cursor` names (the first without one), and the next page's
/// cursor if there is one.
fn page<T: Clone>(
    entries: &[T],
    cursor: Option<&str>,
    list: &str,
) -> Result<(Vec<T>, Option<String>), ErrorObject> {
    let start = match cursor {
        None => 0,
        Some(cursor) => cursor
            .strip_prefix(list)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|offset| offset.parse::<usize>().ok())
            .filter(|&offset| offset <= entries.len())
            .ok_or_else(|| ErrorObject::invalid_params(format!("invalid cursor: {cursor:?}")))?,
    };
    let end = (start + PAGE).min(entries.len());
    let next = (end < entries.len()).then(|| format!("{list}.{end}"));
    Ok((entries[start..end].to_vec(), next))
}

/// A string field of `params`, required.
fn required<'a>(params: &'a Value, method: &str, field: &str) -> Result<&'a str, ErrorObject> {
    params.get(field).and_then(Value::as_str).ok_or_else(|| {
        ErrorObject::invalid_params(format!("{method} needs params.{field} (a string)"))
    })
}

/// Where the resource `uri` goes, if `session` may see its server.
fn route_uri(
    hub: &McpHub,
    session: &Session,
    uri: &str,
    template: bool,
) -> Result<UriRoute, ErrorObject> {
    let visible = |server: &ServerEntry| sees_server(session, server);
    let route = if template {
        hub.route_template_among(uri, &visible)
    } else {
        hub.route_uri_among(uri, &visible)
    }
    .map_err(to_error)?;
    if !sees_server(session, &route.server) {
        return Err(to_error(SurfaceError::ResourceNotFound(uri.to_owned())));
    }
    Ok(route)
}

/// `resources/read`: routed, the server's `contents[].uri` shown as the client sees them.
async fn read(hub: &McpHub, session: &Session, params: &Value) -> Result<Value, ErrorObject> {
    let uri = required(params, "resources/read", "uri")?;
    let route = route_uri(hub, session, uri, false)?;
    let mut forwarded = params.clone();
    forwarded["uri"] = Value::String(route.original.clone());
    let raw = McpHub::request(&route.server, "resources/read", forwarded)
        .await
        .map_err(to_error)?;
    let mut result = parse(&raw)?;
    if route.explicit
        && let Some(contents) = result.get_mut("contents").and_then(Value::as_array_mut)
    {
        for content in contents {
            if let Some(own) = content.get("uri").and_then(Value::as_str) {
                content["uri"] = Value::String(route.exposed(own));
            }
        }
    }
    Ok(result)
}

/// `resources/subscribe` (`on`) or `resources/unsubscribe`.
async fn subscribe(
    hub: &Arc<McpHub>,
    session: &Arc<Session>,
    params: &Value,
    on: bool,
) -> Result<Value, ErrorObject> {
    let method = if on {
        "resources/subscribe"
    } else {
        "resources/unsubscribe"
    };
    let uri = required(params, method, "uri")?;
    // Routed once, as this session sees the servers, and followed by that route.
    let route = route_uri(hub, session, uri, false)?;
    let done = if on {
        hub.subscribe_resource(session, uri, &route).await
    } else {
        hub.unsubscribe_resource(session, &route).await
    };
    done.map_err(to_error)?;
    Ok(json!({}))
}

/// `prompts/get`: routed by name, with its arguments.
async fn get_prompt(hub: &McpHub, session: &Session, params: &Value) -> Result<Value, ErrorObject> {
    let name = required(params, "prompts/get", "name")?;
    if !matches!(
        params.get("arguments"),
        None | Some(Value::Null | Value::Object(_))
    ) {
        return Err(ErrorObject::invalid_params(
            "prompts/get arguments must be an object",
        ));
    }
    let route = hub
        .route_visible_prompt(name, |n| session.in_scope(n))
        .map_err(to_error)?;
    let mut forwarded = params.clone();
    forwarded["name"] = Value::String(route.prompt.clone());
    let raw = McpHub::request(&route.server, "prompts/get", forwarded)
        .await
        .map_err(to_error)?;
    parse(&raw)
}

/// `completion/complete`: routed by its `ref` (a prompt's name, or a resource template).
async fn complete(hub: &McpHub, session: &Session, params: &Value) -> Result<Value, ErrorObject> {
    const METHOD: &str = "completion/complete";
    let reference = params.get("ref").filter(|r| r.is_object()).ok_or_else(|| {
        ErrorObject::invalid_params(format!("{METHOD} needs params.ref (an object)"))
    })?;
    let argument = params.get("argument");
    if !argument.is_some_and(|a| a.get("name").is_some_and(Value::is_string)) {
        return Err(ErrorObject::invalid_params(format!(
            "{METHOD} needs params.argument with a name (a string)"
        )));
    }
    let mut forwarded = params.clone();
    let server = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => {
            let name = required(reference, METHOD, "name")
                .map_err(|_| ErrorObject::invalid_params("ref/prompt needs a name (a string)"))?;
            let route = hub
                .route_visible_prompt(name, |n| session.in_scope(n))
                .map_err(to_error)?;
            forwarded["ref"]["name"] = Value::String(route.prompt.clone());
            route.server.clone()
        }
        Some("ref/resource") => {
            let uri = required(reference, METHOD, "uri")
                .map_err(|_| ErrorObject::invalid_params("ref/resource needs a uri (a string)"))?;
            let route = route_uri(hub, session, uri, true)?;
            forwarded["ref"]["uri"] = Value::String(route.original.clone());
            route.server
        }
        other => {
            return Err(ErrorObject::invalid_params(format!(
                "{METHOD}: ref.type must be \"ref/prompt\" or \"ref/resource\", not {}",
                other.map_or_else(|| "missing".to_owned(), |t| format!("{t:?}"))
            )));
        }
    };
    let raw = McpHub::request(&server, METHOD, forwarded)
        .await
        .map_err(to_error)?;
    parse(&raw)
}

/// A server's result as a tree.
fn parse(raw: &serde_json::value::RawValue) -> Result<Value, ErrorObject> {
    serde_json::from_str(raw.get())
        .map_err(|e| ErrorObject::internal_error(format!("the server's result is not JSON: {e}")))
}

/// The JSON-RPC error of a request that was not answered: the server's own error as it sent
/// it; `-32602` for an unknown prompt; `-32002` (with the URI as `data.uri`) for an unknown
/// resource; `-32603` for a server that is unavailable, timed out or went away.
fn to_error(e: SurfaceError) -> ErrorObject {
    match e {
        SurfaceError::Call(CallError::Rpc { error, .. }) => error,
        SurfaceError::UnknownPrompt(_) | SurfaceError::AmbiguousPrompt { .. } => {
            ErrorObject::invalid_params(e.to_string())
        }
        SurfaceError::TooManySubscriptions(_) => {
            ErrorObject::new(ErrorObject::INVALID_REQUEST, e.to_string())
        }
        SurfaceError::ResourceNotFound(ref uri)
        | SurfaceError::AmbiguousResource { ref uri, .. } => {
            let data = json!({ "uri": uri });
            ErrorObject::new(RESOURCE_NOT_FOUND, e.to_string()).with_data(data)
        }
        other => ErrorObject::internal_error(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_page_through_a_list_and_refuse_what_they_did_not_make() {
        let entries: Vec<usize> = (0..250).collect();
        let (first, next) = page(&entries, None, "prompts").unwrap();
        assert_eq!((first.len(), next.as_deref()), (PAGE, Some("prompts.100")));
        let (second, next) = page(&entries, next.as_deref(), "prompts").unwrap();
        assert_eq!(second[0], 100);
        let (last, next) = page(&entries, next.as_deref(), "prompts").unwrap();
        assert_eq!((last.len(), next), (50, None));
        let (empty, next) = page::<usize>(&[], None, "resources").unwrap();
        assert!(empty.is_empty() && next.is_none());
        for bad in [
            "",
            "prompts",
            "prompts.",
            "prompts.x",
            "prompts.251",
            "resources.100",
            "-1",
        ] {
            let e = page(&entries, Some(bad), "prompts").unwrap_err();
            assert_eq!(e.code, ErrorObject::INVALID_PARAMS, "{bad}");
        }
    }

    #[test]
    fn handled_methods() {
        for m in [
            "resources/list",
            "resources/read",
            "prompts/get",
            "completion/complete",
        ] {
            assert!(handles(m), "{m}");
        }
        assert!(!handles("tools/list"));
        assert!(!handles("logging/setLevel"));
    }
}
