//! The gateway router in-process: what the daemon cannot easily show end to end (the MCP
//! server not being bound, an MCP server that accepts connections and never answers, an
//! unhealthy tree), on tokio's paused clock where ceilings are long.
//!
//! - `roles`: the route table walked with a token of each role; the router has no route
//!   outside it; spawning needs the owner; session redaction in introspection.
//! - `throttle`: failed attempts are delayed, bounded, and never hold up a valid token.
//! - `guards`: the exact-origin rule, `allowed_origins`, the body cap of every route.
//! - `client_tokens`: a client token opens no gateway route; the owner creates, lists and
//!   revokes client tokens through `/api/tokens`.
//! - `whoami`: `/api/whoami` and `/api/logout`, the caller's own token; the dashboard's files
//!   without a token.

mod client_tokens;
mod guards;
mod roles;
mod throttle;
mod whoami;

mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::Gateway;
use crate::auth::{Role, read_owner_token};
use crate::config::Config;
use crate::tree::Services;

#[tokio::test]
async fn every_proxied_route_answers_503_when_the_mcp_server_is_not_bound() {
    let home = tempfile::tempdir().unwrap();
    let services = Services::new(Config::default_in(home.path()), home.path(), None).unwrap();
    let token = services.tokens.issue("test", Role::Operator).unwrap().token;
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let app = Gateway::new(services, addr)
        .router()
        .layer(MockConnectInfo(addr));
    for (method, path) in [
        ("GET", "/api/mcp/health"),
        ("POST", "/api/mcp/session"),
        ("POST", "/api/mcp/call"),
        ("GET", "/api/mcp/session/x/events"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:9")
            .header("authorization", format!("Bearer {token}"))
            .header("x-revka-session", "x")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}"
        );
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "available": false, "reason": "mcp server not bound" })
        );
    }
    // Discovery never fails: it reports the missing file.
    let request = Request::builder()
        .uri("/api/mcp/discovery")
        .header("host", "127.0.0.1:9")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["reason"], "discovery file missing");
}

#[tokio::test(start_paused = true)]
async fn a_route_without_its_own_timeout_answers_504_after_the_default() {
    let home = tempfile::tempdir().unwrap();
    let mut config = Config::default_in(home.path());
    config.gateway.request_timeout_secs = 2;
    let services = Services::new(config, home.path(), None).unwrap();
    let gateway = Gateway::new(services, "127.0.0.1:9".parse().unwrap());
    let app = axum::Router::new()
        .route(
            "/stuck",
            axum::routing::get(std::future::pending::<axum::response::Response>),
        )
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            super::server::within_default,
        ))
        .with_state(gateway);
    let request = Request::builder()
        .uri("/stuck")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"], "the request timed out after 2s", "{body}");
}

/// A listener that accepts every connection and never answers: each accepted socket is held
/// open, unread, until the task is aborted. Counts the connections it accepted.
struct Hanging {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Hanging {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The gateway's router over fresh services in `home`, and the owner token.
fn gateway_in(home: &std::path::Path, config: Config) -> (axum::Router, Services, String) {
    let services = Services::new(config, home, None).unwrap();
    services.tokens.ensure_owner_token(home).unwrap();
    let token = read_owner_token(home).unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let app = Gateway::new(services.clone(), addr)
        .router()
        .layer(MockConnectInfo(addr));
    (app, services, token)
}

/// Sends `request` (host and bearer added) and returns the status, the body as JSON, and how
/// long the answer took on tokio's clock.
async fn send(
    app: &axum::Router,
    token: &str,
    request: axum::http::request::Builder,
    body: &str,
) -> (StatusCode, Value, std::time::Duration) {
    let request = request
        .header("host", "127.0.0.1:9")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let started = tokio::time::Instant::now();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let took = started.elapsed();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body, took)
}

#[tokio::test(start_paused = true)]
async fn each_proxied_route_gives_up_on_a_hanging_mcp_server_at_its_own_ceiling() {
    use std::time::Duration;
    let home = tempfile::tempdir().unwrap();
    let upstream = Hanging::start().await;
    let (app, services, token) = gateway_in(home.path(), Config::default_in(home.path()));
    // The MCP server "is bound" at the hanging listener, and mcp.json names it.
    services.mcp_bound.send_replace(Some(upstream.addr));
    let url = format!("http://{}/mcp", upstream.addr);
    crate::http::discovery::write_discovery(home.path(), &url).unwrap();

    let get = |path: &str| Request::builder().method("GET").uri(path);
    let post = |path: &str| Request::builder().method("POST").uri(path);
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
    let cases = [
        ("/api/mcp/health", get("/api/mcp/health"), "", 5),
        ("/api/mcp/session", post("/api/mcp/session"), "{}", 10),
        (
            "/api/mcp/call",
            post("/api/mcp/call")
                .header("x-revka-session", "0123")
                .header("x-revka-mcp-token", "abcd"),
            call,
            120, // [gateway] call_timeout_secs, default
        ),
    ];
    for (n, (route, request, body, secs)) in cases.into_iter().enumerate() {
        let (status, body, took) = send(&app, &token, request, body).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{route}: {body}");
        assert_eq!(
            body["error"],
            format!("the request timed out after {secs}s"),
            "{route}"
        );
        let ceiling = Duration::from_secs(secs);
        assert!(
            took >= ceiling && took < ceiling + Duration::from_secs(1),
            "{route}: answered after {took:?}, ceiling {ceiling:?}"
        );
        // It waited on the upstream's answer, not on a connection that never came.
        assert_eq!(upstream.accepted.load(Ordering::SeqCst), n + 1, "{route}");
    }

    // Discovery is never an error: the 500 ms health probe fails, and it says so.
    let (status, body, took) = send(&app, &token, get("/api/mcp/discovery"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({ "available": false, "reason": "health check failed" })
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(1),
        "discovery answered after {took:?}"
    );
}

#[tokio::test]
async fn a_proxied_call_needs_a_session_header_and_a_known_session() {
    let home = tempfile::tempdir().unwrap();
    let upstream = Hanging::start().await;
    let (app, services, token) = gateway_in(home.path(), Config::default_in(home.path()));
    services.mcp_bound.send_replace(Some(upstream.addr));
    let post = || Request::builder().method("POST").uri("/api/mcp/call");
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let (status, body, _) = send(&app, &token, post(), ping).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "missing X-Revka-Session header");
    // Without an MCP token of its own, the gateway must know the session to lend its token.
    let (status, body, _) = send(
        &app,
        &token,
        post().header("x-revka-session", "f".repeat(32)),
        ping,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unknown or expired MCP session");
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        0,
        "refused before reaching the MCP server"
    );
}

#[test]
fn the_server_test_timeout_is_whole_seconds_floored_at_one() {
    use std::time::Duration;
    let spec = |timeout_ms: Value| {
        let request = serde_json::json!({ "name": "t", "command": "x", "timeout_ms": timeout_ms });
        super::proxy::test_spec(serde_json::from_value(request).unwrap()).unwrap()
    };
    for (ms, secs) in [
        (Value::from(500), 1),
        (Value::from(0), 1),
        (Value::from(1999), 1),
        (Value::from(2500), 2),
        (Value::from(30_000), 30),
        (Value::Null, 180),
    ] {
        let spec = spec(ms.clone());
        assert_eq!(spec.tool_timeout, Duration::from_secs(secs), "{ms}");
        // The handshake is always bounded by the hard 10 s ceiling, whatever the hint.
        assert_eq!(spec.handshake_timeout, Duration::from_secs(10), "{ms}");
    }
}

#[tokio::test]
async fn api_health_is_503_while_the_tree_is_unhealthy() {
    use revka_actors::ActorState;
    let home = tempfile::tempdir().unwrap();
    let (app, services, token) = gateway_in(home.path(), Config::default_in(home.path()));
    let health = || Request::builder().method("GET").uri("/api/health");
    // Nothing started yet: the root is not running.
    let (status, body, _) = send(&app, &token, health(), "").await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::SERVICE_UNAVAILABLE, &Value::from("unhealthy")),
        "{body}"
    );
    let root = &services.status_root;
    root.set_state(ActorState::Running);
    let mcp_http = root.child("mcp_http", "listener", None);
    mcp_http.set_state(ActorState::Running);
    let (status, body, _) = send(&app, &token, health(), "").await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &Value::from("healthy")),
        "{body}"
    );
    // The MCP listener failed: unhealthy again, and the body says which component.
    mcp_http.set_state(ActorState::Failed);
    let (status, body, _) = send(&app, &token, health(), "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["components"]["mcp_http"], "failed", "{body}");
}

/// A call stream cut at the gateway's ceiling ends as a client can tell: the progress sent so
/// far, then a JSON-RPC error for the call's id, then `done`; and the upstream connection is
/// closed, which cancels the call there.
#[tokio::test]
async fn a_call_stream_cut_at_the_ceiling_ends_with_an_error_for_its_id_then_done() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let home = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = socket.read(&mut buf).await;
        let progress = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
             transfer-encoding: chunked\r\n\r\n{:x}\r\n{progress}\r\n",
            progress.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        // Then silence, until the gateway hangs up.
        let closed = loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break true,
                Ok(_) => {}
            }
        };
        let _ = closed_tx.send(closed);
    });
    let mut config = Config::default_in(home.path());
    config.gateway.call_timeout_secs = 1;
    let (app, services, token) = gateway_in(home.path(), config);
    services.mcp_bound.send_replace(Some(addr));
    let request = Request::builder()
        .method("POST")
        .uri("/api/mcp/call")
        .header("host", "127.0.0.1:9")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("x-revka-session", "0123")
        .header("x-revka-mcp-token", "abcd")
        .body(Body::from(
            r#"{"jsonrpc":"2.0","id":"call-7","method":"tools/call","params":{"name":"x"}}"#,
        ))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = tokio::time::timeout(
        Duration::from_secs(20),
        axum::body::to_bytes(response.into_body(), 1 << 16),
    )
    .await
    .expect("the stream ends at the ceiling")
    .unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert_eq!(frames.len(), 3, "{text}");
    assert!(frames[0].contains("notifications/progress"), "{text}");
    let error: Value = serde_json::from_str(frames[1].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["id"], "call-7");
    assert_eq!(error["error"]["code"], -32001);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ceiling of 1s ([gateway] call_timeout_secs)"),
        "{error}"
    );
    assert_eq!(frames[2], "event: done\ndata: {}");
    let closed = tokio::time::timeout(Duration::from_secs(10), closed_rx).await;
    assert_eq!(
        closed.ok().and_then(Result::ok),
        Some(true),
        "upstream hung up"
    );
}

/// The error that ends a call cut at the ceiling carries the call's id exactly as the client
/// wrote it (`null` when the request has no id to read).
#[test]
fn a_call_cut_at_the_ceiling_is_answered_with_its_id_byte_for_byte() {
    use std::time::Duration;
    let sixty_digits = "123456789012345678901234567890123456789012345678901234567890";
    for (id, echoed) in [
        (sixty_digits, sixty_digits),
        ("1.0", "1.0"),
        ("-0", "-0"),
        (r#""call-\u0037""#, r#""call-\u0037""#),
        ("7", "7"),
    ] {
        let ceiling = super::proxy::Ceiling {
            deadline: tokio::time::Instant::now(),
            request: format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call"}}"#).into(),
            limit: Duration::from_secs(1),
        };
        let frames = ceiling.frames();
        let text = std::str::from_utf8(&frames).unwrap();
        assert!(text.contains(&format!(r#""id":{echoed},"#)), "{id}: {text}");
        assert!(text.ends_with("event: done\ndata: {}\n\n"), "{text}");
    }
    let no_id = super::proxy::Ceiling {
        deadline: tokio::time::Instant::now(),
        request: r#"{"jsonrpc":"2.0","method":"tools/call"}"#.into(),
        limit: Duration::from_secs(1),
    };
    let frames = no_id.frames();
    assert!(
        std::str::from_utf8(&frames)
            .unwrap()
            .contains(r#""id":null,"#)
    );
}
