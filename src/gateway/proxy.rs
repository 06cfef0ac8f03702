//! `/api/mcp/*` and `/ws/mcp/events` (seed 003): the same-origin proxy to Revka's MCP server
//! for the browser, and the server-config test.
//!
//! The proxy reaches the in-process MCP server at its bound address; when it is not bound,
//! every proxied route answers 503 `{available: false, reason: "mcp server not bound"}`.
//! Upstream status, content type and body are passed back unchanged; `tools/call` streams are
//! passed through as they arrive. One shared HTTP client serves every request.
//!
//! Sessions through the proxy: a session is usable here with its own MCP token, sent in
//! `X-Revka-Mcp-Token` (or `mcp_token` on the WebSocket) and checked by the MCP server; or
//! without one by the gateway token that created it through `POST /api/mcp/session`, which the
//! gateway records on the session. Any other caller without the session's token gets the
//! answer of an unknown session, so session ids cannot be probed.
//!
//! `POST /api/mcp/servers/test` spawns the `command` of a stdio config: that needs the
//! `owner` role; an `operator` may test http, sse and url configs.
//!
//! `/ws/mcp/events` selects the fixed subprotocol `revka`, never `bearer.<token>` (see
//! [`ws::check_subprotocols`](super::ws::check_subprotocols)).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use revka_actors::mcp::connection::probe;
use revka_actors::mcp::hub::ToolFilter;
use revka_mcp::jsonrpc::{self, ErrorObject, Id};
use revka_mcp::spec::{ServerSpec, TransportSpec};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::server::{Caller, Gateway, MAX_BODY};
use super::ws::WS_PROTOCOL;
use crate::auth::Role;
use crate::http::discovery::{DISCOVERY_FILE, read_discovery_file};
use crate::http::response::error;

mod sessions;

use sessions::{Use, claim, mcp_token};

const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const DISCOVERY_PROBE: Duration = Duration::from_millis(500);
/// Hard ceiling of `POST /api/mcp/servers/test` (seed 002: `TEST_HANDSHAKE_TIMEOUT_SECS`).
const TEST_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn not_bound() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "available": false, "reason": "mcp server not bound" })),
    )
        .into_response()
}

fn mcp_addr(gw: &Gateway) -> Option<SocketAddr> {
    *gw.services().mcp_bound.borrow()
}

fn body_or_413(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Box<Response>> {
    body.map_err(|e| {
        Box::new(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds {} KiB", MAX_BODY / 1024),
            )
        } else {
            error(e.status(), e.body_text())
        })
    })
}

/// When a call's SSE stream is cut at its ceiling: how the stream ends, so a client waiting
/// for the response gets one (a JSON-RPC error for the call's id) and then `done`.
pub(super) struct Ceiling {
    /// When the stream is cut.
    pub(super) deadline: tokio::time::Instant,
    /// The request, kept (a reference count) to read its id only if the stream is cut.
    pub(super) request: Bytes,
    /// The ceiling, for the message.
    pub(super) limit: Duration,
}

impl Ceiling {
    /// The error response for the request's JSON-RPC id (`null` if it has none readable),
    /// and `done`, as SSE frames.
    pub(super) fn frames(&self) -> Bytes {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(borrow, default)]
            id: Option<&'a RawValue>,
        }
        // The id exactly as the client wrote it (see `jsonrpc::Id`).
        let id = serde_json::from_slice::<Head<'_>>(&self.request)
            .ok()
            .and_then(|head| head.id)
            .and_then(Id::from_json);
        let message = format!(
            "the call ran past the gateway's ceiling of {}s ([gateway] call_timeout_secs) and was \
             cancelled",
            self.limit.as_secs()
        );
        let error = jsonrpc::Response::error(id, ErrorObject::new(-32001, message)).to_line();
        let mut frames = Vec::with_capacity(error.len() + 32);
        frames.extend_from_slice(b"data: ");
        frames.extend_from_slice(&error);
        frames.extend_from_slice(b"\n\nevent: done\ndata: {}\n\n");
        Bytes::from(frames)
    }
}

/// `body` until `ceiling.deadline`; cut there, it ends with [`Ceiling::frames`]. Dropping the
/// upstream stream closes its connection, which cancels the call upstream.
fn until_ceiling<S>(body: S, ceiling: Ceiling) -> impl Stream<Item = Result<Bytes, std::io::Error>>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let sleep = Box::pin(tokio::time::sleep_until(ceiling.deadline));
    let state = Some((Box::pin(body), sleep, ceiling));
    futures::stream::unfold(state, |state| async move {
        let (mut body, mut sleep, ceiling) = state?;
        tokio::select! {
            biased;
            chunk = body.next() => chunk.map(|c| (c, Some((body, sleep, ceiling)))),
            () = &mut sleep => {
                tracing::warn!(limit_secs = ceiling.limit.as_secs(), "a proxied call stream was cut at its ceiling");
                Some((Ok(ceiling.frames()), None))
            }
        }
    })
}

/// An upstream answer's status (502 if it is not one axum knows) and content type (JSON if it
/// names none), to pass back.
fn status_and_type(resp: &reqwest::Response) -> (StatusCode, String) {
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    (status, content_type)
}

/// Passes an upstream response back: status, content type, `Retry-After`, and the body as a
/// stream, cut at the call's ceiling if it has one.
fn pass_through(resp: reqwest::Response, ceiling: Option<Ceiling>) -> Response {
    let (status, content_type) = status_and_type(&resp);
    let is_sse = content_type.starts_with("text/event-stream");
    // When to retry a refusal (a full session table, a rate limit): the caller's to honour.
    let retry_after = resp.headers().get(reqwest::header::RETRY_AFTER).cloned();
    let stream = resp
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    let body = match ceiling {
        Some(ceiling) if is_sse => Body::from_stream(until_ceiling(stream, ceiling)),
        Some(ceiling) => {
            Body::from_stream(stream.take_until(tokio::time::sleep_until(ceiling.deadline)))
        }
        None => Body::from_stream(stream),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Some(v) = retry_after {
        headers.insert(header::RETRY_AFTER, v);
    }
    if is_sse {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-cache"),
        );
        headers.insert(
            header::HeaderName::from_static("x-accel-buffering"),
            header::HeaderValue::from_static("no"),
        );
    }
    response
}

fn upstream_error(e: &reqwest::Error) -> Response {
    error(
        StatusCode::BAD_GATEWAY,
        format!("the MCP server did not answer: {e}"),
    )
}

/// `GET /api/mcp/discovery`: reads `mcp.json` (cached by modification time), probes `/health`
/// with 500 ms; always 200 with `available`.
pub(super) async fn discovery(State(gw): State<Gateway>) -> Response {
    let path = gw.services().home.join(DISCOVERY_FILE);
    let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let doc = {
        let mut cache = gw
            .inner
            .discovery
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (mtime, cache.as_ref()) {
            (None, _) => None,
            (Some(m), Some((cached, doc))) if *cached == m => Some(doc.clone()),
            (Some(m), _) => {
                let doc = read_discovery_file(&path);
                *cache = doc.clone().map(|d| (m, d));
                doc
            }
        }
    };
    let Some(doc) = doc else {
        return axum::Json(json!({ "available": false, "reason": "discovery file missing" }))
            .into_response();
    };
    let health_url = format!("{}/health", doc.url.trim_end_matches("/mcp"));
    let probe = gw
        .services()
        .http
        .get(&health_url)
        .timeout(DISCOVERY_PROBE)
        .send()
        .await;
    let health = match probe {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
        _ => None,
    };
    match health {
        Some(health) => axum::Json(json!({ "available": true, "url": doc.url, "health": health }))
            .into_response(),
        None => axum::Json(json!({ "available": false, "reason": "health check failed" }))
            .into_response(),
    }
}

/// `GET /api/mcp/health` (5 s).
pub(super) async fn health(State(gw): State<Gateway>) -> Response {
    let Some(addr) = mcp_addr(&gw) else {
        return not_bound();
    };
    let http = gw.services().http.clone();
    gw.within(Some(HEALTH_TIMEOUT), async move {
        match http.get(format!("http://{addr}/health")).send().await {
            Ok(resp) => pass_through(resp, None),
            Err(e) => upstream_error(&e),
        }
    })
    .await
}

/// `POST /api/mcp/session` (10 s): the body is forwarded verbatim; the caller's gateway token
/// is recorded as the session's owner.
pub(super) async fn session(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_or_413(body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(addr) = mcp_addr(&gw) else {
        return not_bound();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let http = gw.services().http.clone();
    let owner = gw.clone();
    gw.within(Some(SESSION_TIMEOUT), async move {
        let request = http
            .post(format!("http://{addr}/session"))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        match request.send().await {
            Ok(resp) if resp.status().is_success() => claim(&owner, &caller, resp).await,
            Ok(resp) => pass_through(resp, None),
            Err(e) => upstream_error(&e),
        }
    })
    .await
}

/// `POST /api/mcp/call` (120 s): forwards `X-Revka-Session` and the session's bearer to
/// `POST /mcp`; an SSE answer is streamed through as it arrives.
pub(super) async fn call(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_or_413(body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(addr) = mcp_addr(&gw) else {
        return not_bound();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(session_id) = header("x-revka-session").map(str::to_owned) else {
        return error(StatusCode::BAD_REQUEST, "missing X-Revka-Session header");
    };
    let Some(token) = mcp_token(
        &gw,
        &caller,
        &session_id,
        header("x-revka-mcp-token"),
        Use::Call,
    ) else {
        return error(StatusCode::UNAUTHORIZED, "unknown or expired MCP session");
    };
    let limit = gw.services().config.get().gateway.call_timeout();
    let ceiling = Ceiling {
        deadline: tokio::time::Instant::now() + limit,
        request: body.clone(),
        limit,
    };
    let http = gw.services().http.clone();
    gw.within(Some(limit), async move {
        let request = http
            .post(format!("http://{addr}/mcp"))
            .bearer_auth(token)
            .header("X-Revka-Session", session_id)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        match request.send().await {
            Ok(resp) => pass_through(resp, Some(ceiling)),
            Err(e) => upstream_error(&e),
        }
    })
    .await
}

/// `GET /api/mcp/session/{id}/events`: SSE passthrough, no request timeout.
pub(super) async fn events(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(addr) = mcp_addr(&gw) else {
        return not_bound();
    };
    let presented = headers
        .get("x-revka-mcp-token")
        .and_then(|v| v.to_str().ok());
    let Some(token) = mcp_token(&gw, &caller, &id, presented, Use::Watch) else {
        return error(StatusCode::UNAUTHORIZED, "unknown or expired MCP session");
    };
    let url = format!("http://{addr}/session/{}/events", encode_segment(&id));
    match gw
        .services()
        .http
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await
    {
        Ok(resp) => pass_through(resp, None),
        Err(e) => upstream_error(&e),
    }
}

/// Percent-encodes a path segment: everything but ASCII letters, digits and `-_.~`.
fn encode_segment(s: &str) -> String {
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, KEEP).to_string()
}

/// The `/ws/mcp/events` query.
#[derive(Debug, Deserialize)]
pub(super) struct WsQuery {
    session_id: Option<String>,
    mcp_token: Option<String>,
}

/// `GET /ws/mcp/events`: relays a session's progress stream as WebSocket text frames.
pub(super) async fn ws_events(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(session_id) = q.session_id.filter(|s| !s.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing session_id query parameter",
        );
    };
    if let Err(message) = super::ws::check_subprotocols(&headers, WS_PROTOCOL) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let ws = ws.protocols([WS_PROTOCOL]).max_message_size(64 * 1024);
    let addr = mcp_addr(&gw);
    let token = mcp_token(
        &gw,
        &caller,
        &session_id,
        q.mcp_token.as_deref(),
        Use::Watch,
    );
    let http = gw.services().http.clone();
    ws.on_upgrade(move |mut socket| async move {
        let (Some(addr), Some(token)) = (addr, token) else {
            let detail = if addr.is_none() {
                "mcp server not bound"
            } else {
                "unknown or expired MCP session"
            };
            let frame = json!({ "error": "daemon-unreachable", "detail": detail }).to_string();
            let _ = socket.send(Message::Text(frame.into())).await;
            let close = axum::extract::ws::CloseFrame {
                code: 1011,
                reason: detail.into(),
            };
            let _ = socket.send(Message::Close(Some(close))).await;
            return;
        };
        let url = format!(
            "http://{addr}/session/{}/events",
            encode_segment(&session_id)
        );
        super::ws::relay(socket, http, url, token).await;
    })
}

/// `POST /api/mcp/servers/test` body (the shape of an `[[mcp.servers]]` entry).
#[derive(Debug, Deserialize)]
pub(super) struct TestRequest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    transport: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// As in the config: only the tools matching these are reported as registered.
    #[serde(default)]
    allowed_tools: Option<Vec<String>>,
    /// As in the config: the tools matching these are reported as filtered out.
    #[serde(default)]
    denied_tools: Vec<String>,
}

impl TestRequest {
    /// The request's tool filter, its patterns checked as the config checks them.
    fn tool_filter(&mut self) -> Result<ToolFilter, String> {
        let filter = ToolFilter {
            allowed: self.allowed_tools.take(),
            denied: std::mem::take(&mut self.denied_tools),
        };
        match crate::config::tool_filter_problem(&filter) {
            Some((key, _, message)) => Err(format!("{key}: {message}")),
            None => Ok(filter),
        }
    }
}

fn failed(message: impl Into<String>, latency_ms: u64) -> Response {
    axum::Json(json!({ "ok": false, "error": message.into(), "latency_ms": latency_ms }))
        .into_response()
}

/// Validates a test request into a server spec; `Err` is the `ok:false` message.
pub(super) fn test_spec(req: TestRequest) -> Result<ServerSpec, String> {
    if req.name.trim().is_empty() {
        return Err("name is required".into());
    }
    let transport = req.transport.as_deref().unwrap_or("stdio");
    let url = || -> Result<String, String> {
        let url = req
            .url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| format!("url is required for {transport} transport"))?;
        crate::config::check_url(&url).map_err(|e| format!("invalid url {url:?}: {e}"))?;
        Ok(url)
    };
    let headers: Vec<(String, String)> = req.headers.into_iter().collect();
    if let Some((name, _)) = headers
        .iter()
        .find(|(n, v)| n.is_empty() || v.contains(['\r', '\n']))
    {
        return Err(format!("invalid header {name:?}"));
    }
    let transport = match transport {
        "stdio" => TransportSpec::Stdio {
            command: req
                .command
                .filter(|c| !c.trim().is_empty())
                .ok_or("command is required for stdio transport")?,
            args: req.args,
            env: req.env.into_iter().collect(),
            cwd: None,
        },
        "http" => TransportSpec::Http {
            url: url()?,
            headers,
        },
        "sse" => TransportSpec::Sse {
            url: url()?,
            headers,
        },
        "url" => TransportSpec::Url {
            url: url()?,
            headers,
        },
        other => {
            return Err(format!(
                "unknown transport {other:?} (expected stdio, http, sse or url)"
            ));
        }
    };
    // timeout_ms is a per-tool timeout hint: whole seconds, at least 1.
    let tool_timeout = Duration::from_secs((req.timeout_ms.unwrap_or(180_000) / 1000).max(1));
    Ok(ServerSpec {
        name: req.name,
        transport,
        tool_timeout,
        ping: revka_mcp::spec::PingPolicy::OFF,
        handshake_timeout: TEST_HANDSHAKE_TIMEOUT,
        roots: Vec::new(),
        reset_timeout_on_progress: false,
        shown: None,
        oauth: None,
    })
}

/// `POST /api/mcp/servers/test`: a full handshake with a candidate server config; validation
/// and connection failures are `ok: false` with HTTP 200; hard 10 s ceiling. A stdio config
/// (`transport` absent or `"stdio"`) spawns its command: 403 below the owner role.
pub(super) async fn test_server(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = SystemTime::now();
    let body = match body_or_413(body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let mut request: TestRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    // What `test_spec` turns into a stdio spec: no transport (the default) or "stdio".
    let spawns = matches!(request.transport.as_deref(), None | Some("stdio"));
    if spawns && !caller.role.allows(Role::Owner) {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "forbidden: testing a stdio server config spawns its command, which needs the \
                 owner role; this token has the {} role (http, sse and url configs need \
                 operator)",
                caller.role
            ),
        );
    }
    let filter = match request.tool_filter() {
        Ok(f) => f,
        Err(message) => return failed(message, 0),
    };
    let spec = match test_spec(request) {
        Ok(s) => s,
        Err(message) => return failed(message, 0),
    };
    let http = gw.services().http.clone();
    match tokio::time::timeout(
        TEST_HANDSHAKE_TIMEOUT + Duration::from_secs(1),
        probe(&spec, &http),
    )
    .await
    {
        // `tools` are those the daemon would register; with a filter, `filtered` the rest.
        Ok(report) if report.ok => {
            let (tools, filtered): (Vec<String>, Vec<String>) = report
                .tools
                .unwrap_or_default()
                .into_iter()
                .partition(|tool| filter.rejects(&spec.name, tool).is_none());
            let mut answer = json!({
                "ok": true,
                "tool_count": tools.len(),
                "tools": tools,
                "latency_ms": report.latency_ms,
            });
            if !filter.is_open() {
                answer["filtered"] = json!(filtered);
            }
            axum::Json(answer).into_response()
        }
        Ok(report) => failed(report.error.unwrap_or_default(), report.latency_ms),
        Err(_) => {
            let waited = started.elapsed().unwrap_or_default().as_millis() as u64;
            failed(
                format!("timed out after {}s", TEST_HANDSHAKE_TIMEOUT.as_secs()),
                waited,
            )
        }
    }
}
