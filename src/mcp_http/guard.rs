//! The MCP server's request guard and its JSON-RPC error responses.
//!
//! Part of the MCP server (`root/mcp_http`). [`Guarded`] wraps its router: 403 unless `Host`
//! and `Origin` pass the loopback checks of the shared plumbing
//! ([`crate::http::loopback`]), and `Connection: close` on a 413; a refused `/mcp` request is
//! answered with a JSON-RPC error body. The JSON-RPC answers of `/mcp` (`rpc_error`,
//! `rpc_result`) are built here; plain JSON errors come from [`crate::http::response`].

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::{Either, Map};
use revka_mcp::jsonrpc::{self, ErrorObject, Id};
use serde_json::{Value, json};
use tower_service::Service;

use crate::http::loopback::{Hosts, check_loopback};
use crate::http::response::{close_on_413, json_response};

/// The MCP server's outer layer around its router: 403 unless `Host` and `Origin` pass
/// [`check_loopback`], and `Connection: close` on a 413 (see [`crate::http::response::close_if_body_refused`]).
///
/// A plain [`Service`] rather than axum middleware: axum boxes and clones every middleware
/// layer on each request, and this one is on every tool call.
#[derive(Clone)]
pub(crate) struct Guarded<S> {
    /// What it guards.
    pub(crate) service: S,
    /// What it asks of `Host`.
    pub(crate) hosts: Hosts,
}

type Answer = Result<Response, Infallible>;

impl<S> Service<Request> for Guarded<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Answer>, Map<S::Future, fn(Answer) -> Answer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match check_loopback(request.headers(), self.hosts) {
            Ok(()) => Either::Right(
                self.service
                    .call(request)
                    .map(mark_refused as fn(Answer) -> Answer),
            ),
            Err(reason) => Either::Left(ready(Ok(forbidden(&request, &reason)))),
        }
    }
}

fn mark_refused(answer: Answer) -> Answer {
    answer.map(close_on_413)
}

fn forbidden(request: &Request, reason: &str) -> Response {
    tracing::warn!(%reason, path = %request.uri().path(), "request refused (DNS-rebinding protection)");
    let body = if request.uri().path() == "/mcp" {
        rpc_error_body(None, -32600, &format!("forbidden: {reason}"))
    } else {
        json!({ "error": format!("forbidden: {reason}") })
    };
    json_response(StatusCode::FORBIDDEN, &body)
}

/// 404 for unknown routes.
pub(crate) async fn not_found(request: Request) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({ "error": format!("no route {} {}", request.method(), request.uri().path()) }),
    )
}

/// A JSON-RPC error object body.
pub(crate) fn rpc_error_body(id: Option<&Value>, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": { "code": code, "message": message } })
}

/// A JSON-RPC error response with an HTTP status; `id` (`null` when `None`) is written exactly
/// as the request had it.
pub(crate) fn rpc_error(status: StatusCode, id: Option<&Id>, code: i64, message: &str) -> Response {
    let answer = jsonrpc::Response::error(id.cloned(), ErrorObject::new(code, message));
    json_bytes(status, answer.to_line())
}

/// A JSON-RPC result `{"jsonrpc", "id", "result"}`, the id written exactly as the request had
/// it (not through a `Value`, whose numbers are doubles).
pub(crate) fn rpc_result(id: &Id, result: &Value) -> Response {
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        jsonrpc: &'static str,
        id: &'a Id,
        result: &'a Value,
    }
    let answer = Answer {
        jsonrpc: jsonrpc::VERSION,
        id,
        result,
    };
    // Cannot fail: an id and a `Value` always serialise.
    json_bytes(
        StatusCode::OK,
        serde_json::to_vec(&answer).unwrap_or_default(),
    )
}

/// A JSON response of bytes already serialised.
fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}
