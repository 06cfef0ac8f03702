//! The gateway router in-process: what the daemon cannot easily show end to end (the MCP
//! server not being bound).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::Gateway;
use crate::config::Config;
use crate::tree::Services;

#[tokio::test]
async fn every_proxied_route_answers_503_when_the_mcp_server_is_not_bound() {
    let home = tempfile::tempdir().unwrap();
    let services = Services::new(Config::default_in(home.path()), home.path(), None).unwrap();
    let token = services.tokens.issue("test").unwrap().token;
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
