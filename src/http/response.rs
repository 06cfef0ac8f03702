//! Response pieces both listeners share: JSON bodies, the plain `{"error": message}` error
//! body, and `Connection: close` on a 413.
//!
//! Part of the shared HTTP plumbing ([`crate::http`]). The MCP server (`root/mcp_http`) answers
//! its non-JSON-RPC errors (`/session`, `/health`, unknown routes) with `error` and wraps its
//! router with `close_on_413`; the gateway (`root/gateway`) answers every error with
//! `error` and layers `close_if_body_refused` on its router.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body.to_string()),
    )
        .into_response()
}

/// A plain JSON error `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

/// Response middleware: a 413 goes out before the request body was read, so its connection
/// cannot carry another request; `Connection: close` says so. Without it a client that pools
/// connections (reqwest, httpx) sends its next request down the connection the server is
/// closing and gets a broken response.
pub(crate) async fn close_if_body_refused(response: Response) -> Response {
    close_on_413(response)
}

/// [`close_if_body_refused`] as a plain function, for a service that maps its own answers.
pub(crate) fn close_on_413(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// `body` as a `200 text/event-stream` response, not cached and not buffered by a proxy
/// (`X-Accel-Buffering: no`).
pub(crate) fn event_stream(body: Body) -> Response {
    (
        StatusCode::OK,
        // Static values: a `&str` would be copied into each response.
        [
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/event-stream"),
            ),
            (
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache"),
            ),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                header::HeaderValue::from_static("no"),
            ),
        ],
        body,
    )
        .into_response()
}
