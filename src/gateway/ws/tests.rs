//! The relay over real sockets: an axum app serves a fake SSE upstream (fed chunk by chunk by
//! each test) and a WebSocket route running the relay; a tokio-tungstenite client connects.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Timing, relay_with};

const TOKEN: &str = "mcp-token";
const WAIT: Duration = Duration::from_secs(5);

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn timing() -> Timing {
    Timing {
        connect: Duration::from_secs(2),
        ping: Duration::from_secs(30),
        send: Duration::from_millis(500),
        close_grace: Duration::from_secs(10),
    }
}

/// Sets its flag when dropped: it lives in a fake upstream's response body.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A fake `GET /session/{id}/events`: the test sends the body's chunks through `tx`, exactly as
/// they are to be written, and ends the stream by dropping `tx`.
struct Upstream {
    router: Router,
    tx: mpsc::Sender<Bytes>,
    /// Set once the response body has been dropped (the subscriber left).
    dropped: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Feed {
    rx: Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>,
    dropped: Arc<AtomicBool>,
}

fn unauthorized() -> Response {
    let body = json!({ "error": "unauthorized: unknown session or wrong token" });
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

fn event_stream<S>(stream: S) -> Response
where
    S: futures::Stream<Item = Bytes> + Send + 'static,
{
    let body = Body::from_stream(stream.map(Ok::<_, Infallible>));
    ([(CONTENT_TYPE, "text/event-stream")], body).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    let bearer = format!("Bearer {TOKEN}");
    headers
        .get(AUTHORIZATION)
        .is_some_and(|v| v == bearer.as_str())
        && headers
            .get(ACCEPT)
            .is_some_and(|v| v == "text/event-stream")
}

async fn fed_events(State(feed): State<Feed>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let rx = feed
        .rx
        .lock()
        .unwrap()
        .take()
        .expect("one subscriber per test");
    let guard = SetOnDrop(feed.dropped.clone());
    event_stream(futures::stream::unfold(
        (rx, guard),
        |(mut rx, guard)| async move { rx.recv().await.map(|chunk| (chunk, (rx, guard))) },
    ))
}

fn upstream() -> Upstream {
    let (tx, rx) = mpsc::channel(16);
    let dropped = Arc::new(AtomicBool::new(false));
    let feed = Feed {
        rx: Arc::new(Mutex::new(Some(rx))),
        dropped: dropped.clone(),
    };
    let router = Router::new()
        .route("/events", get(fed_events))
        .with_state(feed);
    Upstream {
        router,
        tx,
        dropped,
    }
}

/// Serves `upstream` and `/ws`, which relays `events_url(this server's address)` with `token`.
/// Returns the WebSocket URL.
async fn serve_with(
    upstream: Router,
    events_url: impl FnOnce(SocketAddr) -> String,
    token: &str,
    timing: Timing,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let events_url = events_url(addr);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = token.to_owned();
    let app = upstream.route(
        "/ws",
        get(move |ws: WebSocketUpgrade| async move {
            ws.on_upgrade(move |socket| relay_with(socket, http, events_url, token, timing))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("ws://{addr}/ws")
}

/// [`serve_with`] relaying this server's `/events`.
async fn serve(upstream: Router, token: &str, timing: Timing) -> String {
    serve_with(
        upstream,
        |addr| format!("http://{addr}/events"),
        token,
        timing,
    )
    .await
}

async fn connect(url: &str) -> Client {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next message other than Ping/Pong.
async fn next(ws: &mut Client) -> WsMessage {
    loop {
        let message = timeout(WAIT, ws.next()).await.expect("a message in time");
        match message.expect("socket open").expect("no socket error") {
            WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            message => return message,
        }
    }
}

async fn text(ws: &mut Client) -> String {
    match next(ws).await {
        WsMessage::Text(text) => text.as_str().to_owned(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn json_frame(ws: &mut Client) -> Value {
    serde_json::from_str(&text(ws).await).unwrap()
}

/// Expects a close frame; completes the handshake. Returns the code.
async fn close_code(ws: &mut Client) -> u16 {
    let code = match next(ws).await {
        WsMessage::Close(Some(frame)) => u16::from(frame.code),
        other => panic!("expected a close frame, got {other:?}"),
    };
    // Reading on flushes the close reply; then the stream ends.
    let rest = timeout(WAIT, ws.next()).await.expect("the socket ends");
    assert!(
        rest.as_ref().is_none_or(Result::is_err),
        "nothing after close: {rest:?}"
    );
    code
}

async fn until_dropped(dropped: &AtomicBool) {
    timeout(WAIT, async {
        while !dropped.load(Ordering::SeqCst) {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the upstream body was dropped");
}

async fn feed(tx: &mpsc::Sender<Bytes>, chunk: &'static [u8]) {
    tx.send(Bytes::from_static(chunk)).await.unwrap();
}

#[tokio::test]
async fn events_become_text_frames_and_the_end_closes_normally() {
    let up = upstream();
    let url = serve(up.router, TOKEN, timing()).await;
    let mut ws = connect(&url).await;

    feed(&up.tx, b": connected\n\n").await;
    feed(&up.tx, b"data: {\"token\":7,\"progress\":4}\n\n").await;
    assert_eq!(text(&mut ws).await, r#"{"token":7,"progress":4}"#);

    feed(
        &up.tx,
        b": keep-alive\n\ndata: line one\ndata: line two\r\n\r\n",
    )
    .await;
    assert_eq!(text(&mut ws).await, "line one\nline two");

    let note = br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
    let mut chunk = b"event: tools_changed\ndata: ".to_vec();
    chunk.extend_from_slice(note);
    chunk.extend_from_slice(b"\n\nevent: message\ndata: named message\n\n");
    up.tx.send(chunk.into()).await.unwrap();
    assert_eq!(text(&mut ws).await.as_bytes(), note);
    assert_eq!(text(&mut ws).await, "named message");

    feed(&up.tx, b"event: lagged\ndata: {\"dropped\": 3}\n\n").await;
    feed(
        &up.tx,
        b"event: other\ndata: not forwarded\n\n: comment\n\n",
    )
    .await;
    assert_eq!(
        json_frame(&mut ws).await,
        json!({ "event": "lagged", "dropped": 3 })
    );
    feed(&up.tx, b"event: reset\ndata: {\"missed\": 2}\n\n").await;
    assert_eq!(
        json_frame(&mut ws).await,
        json!({ "event": "reset", "missed": 2 })
    );

    drop(up.tx);
    let ended = json_frame(&mut ws).await;
    assert_eq!(ended["error"], "stream-ended");
    assert!(
        ended["detail"].as_str().unwrap().contains("ended"),
        "{ended}"
    );
    assert_eq!(close_code(&mut ws).await, 1000);
}

#[tokio::test]
async fn utf8_split_across_chunks_arrives_intact() {
    let up = upstream();
    let url = serve(up.router, TOKEN, timing()).await;
    let mut ws = connect(&url).await;

    // "café 🎉": é is C3 A9, 🎉 is F0 9F 8E 89; each is split between two HTTP chunks.
    feed(&up.tx, b"data: caf\xC3").await;
    sleep(Duration::from_millis(50)).await;
    feed(&up.tx, b"\xA9 \xF0\x9F").await;
    sleep(Duration::from_millis(50)).await;
    feed(&up.tx, b"\x8E\x89\n\n").await;
    assert_eq!(text(&mut ws).await, "café 🎉");
}

#[tokio::test]
async fn an_oversized_event_is_skipped() {
    let up = upstream();
    let url = serve(up.router, TOKEN, timing()).await;
    let mut ws = connect(&url).await;

    let mut big = b"data: ".to_vec();
    big.resize(super::MAX_EVENT_BYTES + 100, b'x');
    big.extend_from_slice(b"\n\n");
    up.tx.send(big.into()).await.unwrap();
    feed(&up.tx, b"data: small\n\n").await;
    assert_eq!(text(&mut ws).await, "small");
}

#[tokio::test]
async fn upstream_401_is_daemon_unreachable_with_close_1008() {
    let up = upstream();
    let url = serve(up.router, "wrong-token", timing()).await;
    let mut ws = connect(&url).await;

    let frame = json_frame(&mut ws).await;
    let detail = "HTTP 401: unauthorized: unknown session or wrong token";
    assert_eq!(
        frame,
        json!({ "error": "daemon-unreachable", "detail": detail })
    );
    assert_eq!(close_code(&mut ws).await, 1008);
}

#[tokio::test]
async fn connection_refused_is_daemon_unreachable_with_close_1011() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let events = format!("http://127.0.0.1:{port}/session/s1/events");
    let with_query = format!("{events}?x=1");
    let url = serve_with(Router::new(), |_| with_query, TOKEN, timing()).await;
    let mut ws = connect(&url).await;

    let frame = json_frame(&mut ws).await;
    let detail = format!("connection refused to {events}");
    assert_eq!(
        frame,
        json!({ "error": "daemon-unreachable", "detail": detail })
    );
    assert_eq!(close_code(&mut ws).await, 1011);
}

#[tokio::test]
async fn a_silent_upstream_or_a_wrong_response_is_daemon_unreachable() {
    // Accepts connections but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let upstreams = Router::new()
        .route(
            "/html",
            get(|| async { ([(CONTENT_TYPE, "text/html")], "<p>hi</p>") }),
        )
        .route(
            "/gone",
            get(|| async { (StatusCode::NOT_FOUND, "no such\n session") }),
        )
        .route("/bare", get(|| async { StatusCode::SERVICE_UNAVAILABLE }));
    let short = Timing {
        connect: Duration::from_millis(300),
        ..timing()
    };
    let cases = [
        (None, "no response from URL within 300ms"),
        (
            Some("/html"),
            r#"unexpected content type "text/html" from URL (expected text/event-stream)"#,
        ),
        (Some("/gone"), "HTTP 404: no such session"),
        (Some("/bare"), "HTTP 503: Service Unavailable"),
    ];
    for (path, expected) in cases {
        let mut events = String::new();
        let url = serve_with(
            upstreams.clone(),
            |addr| {
                events = match path {
                    Some(path) => format!("http://{addr}{path}"),
                    None => format!("http://{silent_addr}/events"),
                };
                events.clone()
            },
            TOKEN,
            short,
        )
        .await;
        let mut ws = connect(&url).await;
        let detail = expected.replace("URL", &events);
        let frame = json_frame(&mut ws).await;
        assert_eq!(
            frame,
            json!({ "error": "daemon-unreachable", "detail": detail })
        );
        assert_eq!(close_code(&mut ws).await, 1011);
    }
    held.abort();
}

#[tokio::test]
async fn client_frames_are_ignored() {
    let up = upstream();
    let url = serve(up.router, TOKEN, timing()).await;
    let mut ws = connect(&url).await;

    feed(&up.tx, b"data: one\n\n").await;
    assert_eq!(text(&mut ws).await, "one");
    ws.send(WsMessage::text("hello?")).await.unwrap();
    ws.send(WsMessage::binary(vec![1, 2, 3])).await.unwrap();
    ws.send(WsMessage::Pong(Bytes::new())).await.unwrap();
    sleep(Duration::from_millis(50)).await;
    feed(&up.tx, b"data: two\n\n").await;
    assert_eq!(text(&mut ws).await, "two");
    assert!(!up.dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_client_close_drops_the_upstream_request() {
    let up = upstream();
    let url = serve(up.router, TOKEN, timing()).await;
    let mut ws = connect(&url).await;

    feed(&up.tx, b"data: one\n\n").await;
    assert_eq!(text(&mut ws).await, "one");
    ws.close(None).await.unwrap();
    // The relay answers the close handshake.
    let reply = timeout(WAIT, ws.next()).await.expect("a close reply");
    assert!(matches!(reply, Some(Ok(WsMessage::Close(_)))), "{reply:?}");
    until_dropped(&up.dropped).await;
    assert!(up.tx.is_closed());
}

#[tokio::test]
async fn pings_are_sent_while_idle() {
    let up = upstream();
    let fast_ping = Timing {
        ping: Duration::from_millis(100),
        ..timing()
    };
    let url = serve(up.router, TOKEN, fast_ping).await;
    let mut ws = connect(&url).await;

    for _ in 0..2 {
        let message = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        assert!(matches!(message, WsMessage::Ping(_)), "{message:?}");
    }
    // The client's automatic pongs are ignored; the relay goes on.
    feed(&up.tx, b"data: after pings\n\n").await;
    assert_eq!(text(&mut ws).await, "after pings");
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_with_1008() {
    const EVENTS: usize = 800;
    const DATA: usize = 64 * 1024; // 800 × 64 KiB ≈ 52 MB
    let dropped = Arc::new(AtomicBool::new(false));
    let guard_flag = dropped.clone();
    let flood = Router::new().route(
        "/events",
        get(move || async move {
            let mut event = b"data: ".to_vec();
            event.resize(6 + DATA, b'z');
            event.extend_from_slice(b"\n\n");
            let event = Bytes::from(event);
            let guard = SetOnDrop(guard_flag);
            event_stream(futures::stream::iter(0..EVENTS).map(move |_| {
                let _ = &guard;
                event.clone()
            }))
        }),
    );
    let url = serve(flood, TOKEN, timing()).await;
    let mut ws = connect(&url).await;

    // Not reading: the relay's sends block, time out after 500 ms, and it closes.
    sleep(Duration::from_secs(2)).await;
    let mut frames = 0;
    let code = loop {
        match next(&mut ws).await {
            WsMessage::Text(text) => {
                assert_eq!(text.len(), DATA);
                frames += 1;
            }
            WsMessage::Close(Some(frame)) => {
                assert_eq!(frame.reason.as_str(), "client too slow");
                break u16::from(frame.code);
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, 1008);
    assert!(frames < EVENTS, "all {frames} events were relayed");
    until_dropped(&dropped).await;
}
