//! Request guards and error responses of the MCP server.
//!
//! DNS-rebinding protection: a browser tricked into resolving `evil.example` to 127.0.0.1 still
//! sends `Host: evil.example` and `Origin: http://evil.example`, so on a loopback bind every
//! request must name a loopback host, and a present `Origin` must be a loopback origin;
//! otherwise 403. On a public bind (`[mcp_server] allow_public_bind`), where clients name the
//! machine as they reach it, any `Host` is taken, and a present `Origin` must still be a
//! loopback one: no web page elsewhere may call the endpoint.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::{Either, Map};
use revka_actors::mcp::jsonrpc::{self, ErrorObject, Id};
use serde_json::{Value, json};
use tower_service::Service;

/// Whether `host` (a `Host` header value: name or IP, optional port) is a loopback name.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1]:port
        match rest.split_once(']') {
            Some((name, tail)) if tail.is_empty() || tail.starts_with(':') => name,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    // The two spellings nearly every client sends, before the general IP parse.
    name == "127.0.0.1"
        || name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `origin` (an `Origin` header value) is `http(s)://<loopback>[:port]`.
pub(crate) fn is_loopback_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match rest {
        Some(authority) if !authority.contains('/') && !authority.contains('@') => {
            is_loopback_host(authority)
        }
        _ => false,
    }
}

/// What the guard asks of a request's `Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hosts {
    /// A loopback name: the server is bound to a loopback address.
    Loopback,
    /// Any (present) `Host`: the server is bound to a public address.
    Any,
}

/// Checks `Host` and `Origin` of a request; `Err` is the reason to refuse it.
pub(crate) fn check_loopback(headers: &HeaderMap, hosts: Hosts) -> Result<(), String> {
    // `from_utf8`, not `to_str`: a non-ASCII byte fails the loopback test below either way.
    let host = headers
        .get(header::HOST)
        .and_then(|h| std::str::from_utf8(h.as_bytes()).ok());
    match host {
        Some(h) if hosts == Hosts::Any || is_loopback_host(h) => {}
        Some(h) => return Err(format!("Host {h:?} is not a loopback name")),
        None => return Err("missing Host header".into()),
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !is_loopback_origin(origin) {
            return Err(format!("Origin {origin:?} is not a loopback origin"));
        }
    }
    Ok(())
}

/// Response middleware: a 413 goes out before the request body was read, so its connection
/// cannot carry another request; `Connection: close` says so. Without it a client that pools
/// connections (reqwest, httpx) sends its next request down the connection the server is
/// closing and gets a broken response.
pub(crate) async fn close_if_body_refused(response: Response) -> Response {
    close_on_413(response)
}

fn close_on_413(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The MCP server's outer layer around its router: 403 unless `Host` and `Origin` pass
/// [`check_loopback`], and `Connection: close` on a 413 (see [`close_if_body_refused`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_and_origins() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]",
            "[::1]:9",
            "127.1.2.3:5",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:80",
            "10.0.0.1",
            "[::2]:1",
            "localhost.evil.com",
            "127.0.0.1:x",
            "[::1]x",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
        for ok in [
            "http://localhost:3000",
            "https://127.0.0.1",
            "http://[::1]:5",
        ] {
            assert!(is_loopback_origin(ok), "{ok}");
        }
        for bad in [
            "null",
            "http://evil.example",
            "file://",
            "http://localhost@evil.com",
            "http://localhost/x",
            "localhost",
        ] {
            assert!(!is_loopback_origin(bad), "{bad}");
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(name, value.parse().unwrap());
        }
        headers
    }

    /// On a public bind clients name the machine as they reach it: any `Host` passes, but no
    /// web page from elsewhere may call the endpoint.
    #[test]
    fn a_public_bind_takes_any_host_but_only_loopback_origins() {
        let lan = headers(&[(header::HOST, "192.168.1.5:8765")]);
        assert!(check_loopback(&lan, Hosts::Any).is_ok());
        assert_eq!(
            check_loopback(&lan, Hosts::Loopback).unwrap_err(),
            "Host \"192.168.1.5:8765\" is not a loopback name"
        );
        let page = headers(&[
            (header::HOST, "192.168.1.5:8765"),
            (header::ORIGIN, "http://192.168.1.5:8765"),
        ]);
        assert!(check_loopback(&page, Hosts::Any).is_err());
        let local = headers(&[
            (header::HOST, "192.168.1.5:8765"),
            (header::ORIGIN, "http://localhost:3000"),
        ]);
        assert!(check_loopback(&local, Hosts::Any).is_ok());
        assert!(
            check_loopback(&HeaderMap::new(), Hosts::Any).is_err(),
            "a Host is needed"
        );
    }
}
