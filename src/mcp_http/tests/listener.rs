//! The MCP server's real listener (`listener()`, as `root/mcp_http` runs it) on a real socket:
//! slow clients are closed after the `[http]` timeouts, long answers are not, connections past
//! the per-source cap are refused, and `POST /session` refuses rather than evicting a live
//! session, and is rate-limited per source.

use std::time::Duration;

use revka_actors::session::{ProgressEvent, SessionEvent};
use serde_json::{Value, json};

use crate::http::testing::{
    CLOSE_BOUND, Raw, SlowClients, SlowRequests, one_second_timeouts, serve, services, slow_clients,
};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `POST /session` on `base`; the status, the `Retry-After` header, and the body.
async fn create_session(base: &str) -> (u16, Option<String>, Value) {
    let response = client()
        .post(format!("{base}/session"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

/// A ping in session `session` (`{session_id, token}`); the HTTP status.
async fn ping(base: &str, session: &Value) -> u16 {
    client()
        .post(format!("{base}/mcp"))
        .bearer_auth(session["token"].as_str().unwrap())
        .header("x-revka-session", session["session_id"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Each kind of slow client is closed after its timeout (one second each here): one that sends
/// nothing, one that stops in the middle of its headers, one that stops in the middle of its
/// body (answered 408 first), and a kept-alive connection with no next request.
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_closed_after_their_timeouts() {
    let (services, _home) = services(one_second_timeouts).await;
    let (addr, stop) = serve(crate::mcp_http::listener(&services).unwrap()).await;

    let SlowClients {
        partial_body, idle, ..
    } = slow_clients(
        addr,
        SlowRequests {
            partial_head: b"POST /session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",
            partial_body: b"POST /session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: \
                application/json\r\nContent-Length: 100\r\n\r\n{\"label\":",
            whole: b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        },
    )
    .await;
    assert!(
        partial_body.contains("did not arrive in full within 1s"),
        "{partial_body}"
    );
    assert!(
        idle.starts_with("HTTP/1.1 200 ") && idle.contains("\"status\":\"ok\""),
        "the request before the idle wait was answered: {idle}"
    );
    stop.cancel();
}

/// The read timeouts bound reading the client, never a long answer: a session's event stream
/// outlives them (it is still open, and delivers, after connections opened with it were closed
/// for being idle).
#[tokio::test(flavor = "multi_thread")]
async fn an_event_stream_outlives_the_read_timeouts() {
    let (services, _home) = services(one_second_timeouts).await;
    let (addr, stop) = serve(crate::mcp_http::listener(&services).unwrap()).await;
    let base = format!("http://{addr}");
    let (status, _, session) = create_session(&base).await;
    assert_eq!(status, 200, "{session}");
    let id = session["session_id"].as_str().unwrap();
    let mut stream = client()
        .get(format!("{base}/session/{id}/events"))
        .bearer_auth(session["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("connected"));

    // Twice the idle timeout passes, as two idle connections opened one after the other show.
    for _ in 0..2 {
        let mut idle = Raw::connect(addr).await;
        idle.until_closed(CLOSE_BOUND, "an idle connection").await;
    }
    let live = services.sessions.get(id).expect("the session is alive");
    live.publish(SessionEvent::Progress(ProgressEvent {
        token: revka_mcp::jsonrpc::Id::from("t"),
        progress: json!(1),
        total: None,
        message: Some("still streaming".into()),
        tool: None,
        timestamp: "2026-01-01T00:00:00Z".into(),
    }));
    let event = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("the event arrives")
        .expect("the stream is still open")
        .expect("a chunk, not the end");
    assert!(
        String::from_utf8_lossy(&event).contains("still streaming"),
        "{event:?}"
    );
    stop.cancel();
}

/// Past `max_connections_per_source` open connections from one source (all of loopback is
/// one), a new connection is answered 503 and closed; once one closes, a new one is served.
#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_per_source_cap_are_refused() {
    let (services, _home) = services(|c| c.http.max_connections_per_source = 2).await;
    let (addr, stop) = serve(crate::mcp_http::listener(&services).unwrap()).await;
    let mut first = Raw::connect(addr).await;
    let _second = Raw::connect(addr).await;
    // 127.0.0.2 is another loopback address, but the same source.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let third = socket.connect(addr).await.unwrap();
    let mut third = Raw::from_stream(third);
    let refused = third
        .until_closed(CLOSE_BOUND, "a connection past the cap")
        .await;
    assert!(
        refused.starts_with("HTTP/1.1 503 ") && refused.contains("retry-after: 1"),
        "{refused}"
    );
    // Closing one makes room.
    first
        .send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await;
    let answer = first.until_closed(CLOSE_BOUND, "a connection: close").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Raw::connect(addr).await;
        // A refused connection may be closed before the request is written.
        let _ = c
            .try_send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await;
        let answer = c.until_closed(CLOSE_BOUND, "a connection: close").await;
        if answer.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(
            answer.starts_with("HTTP/1.1 503 ") && tokio::time::Instant::now() < deadline,
            "no room made by the closed connection: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval
    }
    stop.cancel();
}

/// At the session cap, `POST /session` ends no session that is in use or was used within the
/// eviction floor: it answers 503 with `Retry-After`, and every live session still works.
#[tokio::test(flavor = "multi_thread")]
async fn post_session_at_the_cap_refuses_instead_of_evicting_a_live_session() {
    let (services, _home) = services(|c| c.sessions.max_sessions = 2).await;
    let (addr, stop) = serve(crate::mcp_http::listener(&services).unwrap()).await;
    let base = format!("http://{addr}");
    let (_, _, a) = create_session(&base).await;
    let (_, _, b) = create_session(&base).await;
    let (status, retry_after, body) = create_session(&base).await;
    assert_eq!(status, 503, "{body}");
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!(
        (1..=300).contains(&retry_after),
        "about the 5 min floor less the sessions' idle time: {retry_after}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("session cap"),
        "{body}"
    );
    assert_eq!(ping(&base, &a).await, 200, "not evicted");
    assert_eq!(ping(&base, &b).await, 200, "not evicted");
    stop.cancel();
}

/// `POST /session` is rate-limited per source: past the burst, 429 with `Retry-After`.
#[tokio::test(flavor = "multi_thread")]
async fn post_session_is_rate_limited_per_source() {
    let (services, _home) = services(|c| {
        c.sessions.create_burst = 2;
        c.sessions.create_per_minute = 1;
    })
    .await;
    let (addr, stop) = serve(crate::mcp_http::listener(&services).unwrap()).await;
    let base = format!("http://{addr}");
    assert_eq!(create_session(&base).await.0, 200);
    assert_eq!(create_session(&base).await.0, 200);
    let (status, retry_after, body) = create_session(&base).await;
    assert_eq!(status, 429, "{body}");
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!(
        (1..=60).contains(&retry_after),
        "a token comes back within a minute at 1/min: {retry_after}"
    );
    assert_eq!(services.sessions.len(), 2, "no session was created");
    stop.cancel();
}
