//! The gateway's real listener (`listener()`, as `root/gateway` runs it) on a real socket: slow
//! clients are closed after the `[http]` timeouts, and the MCP server's refusal of a session at
//! its cap (503 with `Retry-After`) passes through the proxy.
//!
//! The one place the gateway names the MCP server (an exception the layout check,
//! `crate::layout`, lists): the proxy's end-to-end tests here serve the real MCP server
//! listener behind the gateway.

use crate::http::testing::{
    CLOSE_BOUND, Raw, SlowClients, SlowRequests, one_second_timeouts, serve, services, slow_clients,
};

/// Each kind of slow client is closed after its timeout (one second each here): one that sends
/// nothing, one that stops in the middle of its headers, one that stops in the middle of its
/// body (answered 408 first; the route itself has no timeout that would end it), and a
/// kept-alive connection with no next request.
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_closed_after_their_timeouts() {
    let (services, _home) = services(one_second_timeouts).await;
    // An operator's: the stalled body goes to `POST /api/mcp/session`, which a viewer may not
    // call (its 403 would come before the body is read).
    let token = services
        .tokens
        .issue("test", crate::auth::Role::Operator)
        .unwrap()
        .token;
    let (addr, stop) = serve(super::super::listener(&services).unwrap()).await;

    let partial_body = format!(
        "POST /api/mcp/session HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"label\":"
    );
    let whole = format!(
        "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let SlowClients { idle, .. } = slow_clients(
        addr,
        SlowRequests {
            partial_head: b"POST /api/mcp/session HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthoriz",
            partial_body: partial_body.as_bytes(),
            whole: whole.as_bytes(),
        },
    )
    .await;
    // Whatever the route answers (the roles are not under test here), the connection stays
    // open for another request until it has been idle for the timeout.
    assert!(
        idle.starts_with("HTTP/1.1 ") && !idle.to_ascii_lowercase().contains("connection: close"),
        "the request before the idle wait was answered, keeping the connection: {idle}"
    );
    stop.cancel();
}

/// `POST /api/mcp/session` when the MCP server's session table is full of live sessions: the
/// 503 and its `Retry-After` reach the gateway's caller.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_session_table_answers_503_with_retry_after_through_the_gateway() {
    let (services, _home) = services(|c| c.sessions.max_sessions = 1).await;
    let token = services
        .tokens
        .issue("test", crate::auth::Role::Operator)
        .unwrap()
        .token;
    let (mcp, stop_mcp) = serve(crate::mcp_http::listener(&services).unwrap()).await;
    services.mcp_bound.send_replace(Some(mcp));
    let (gateway, stop) = serve(super::super::listener(&services).unwrap()).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let create = || {
        http.post(format!("http://{gateway}/api/mcp/session"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
    };
    assert_eq!(create().await.unwrap().status(), 200);
    let refused = create().await.unwrap();
    assert_eq!(refused.status(), 503);
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .expect("Retry-After passed through")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    stop.cancel();
    stop_mcp.cancel();
}

/// The read timeouts never cut a WebSocket: the relay of a session's events (an upgraded
/// connection to the gateway, and an event stream from the MCP server behind it) is still
/// open, and delivers, after connections opened with it were closed for being idle.
#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_relay_outlives_the_read_timeouts() {
    use futures::StreamExt as _;
    use revka_actors::session::{ProgressEvent, SessionEvent};

    let (services, _home) = services(one_second_timeouts).await;
    let token = services
        .tokens
        .issue("test", crate::auth::Role::Viewer)
        .unwrap()
        .token;
    let (mcp, stop_mcp) = serve(crate::mcp_http::listener(&services).unwrap()).await;
    services.mcp_bound.send_replace(Some(mcp));
    let (gateway, stop) = serve(super::super::listener(&services).unwrap()).await;
    let (session, mcp_token) = services
        .sessions
        .create(revka_actors::session::NewSession::new(
            std::path::Path::new("/").into(),
        ))
        .await
        .unwrap();
    let url = format!(
        "ws://{gateway}/ws/mcp/events?session_id={}&mcp_token={mcp_token}&token={token}",
        session.id()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // The relay is up once the MCP server counts its subscriber.
    let deadline = tokio::time::Instant::now() + CLOSE_BOUND;
    while session.subscribers() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no subscriber");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await; // poll interval
    }

    // Twice the idle timeout passes, as two idle connections opened one after the other show.
    for _ in 0..2 {
        let mut idle = Raw::connect(gateway).await;
        idle.until_closed(CLOSE_BOUND, "an idle connection").await;
    }
    session.publish(SessionEvent::Progress(ProgressEvent {
        token: revka_mcp::jsonrpc::Id::from("t"),
        progress: serde_json::json!(1),
        total: None,
        message: Some("still relaying".into()),
        tool: None,
        timestamp: "2026-01-01T00:00:00Z".into(),
    }));
    let text = tokio::time::timeout(CLOSE_BOUND, async {
        loop {
            match ws.next().await.expect("open").expect("no error") {
                tokio_tungstenite::tungstenite::Message::Text(text) => break text,
                _ => continue, // pings
            }
        }
    })
    .await
    .expect("the event arrives");
    assert!(text.as_str().contains("still relaying"), "{text}");
    stop.cancel();
    stop_mcp.cancel();
}
