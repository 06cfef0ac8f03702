//! The HTTP transports over real sockets, against small axum servers that behave like MCP
//! servers in each mode, driven through [`McpClient`] and [`Inbound`]; plus the URL resolver,
//! and (when installed) the official `server-everything` in both of its HTTP modes.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;

mod resume;

use super::discovery::parse_document;
use super::*;
use crate::client::{CallError, CallOptions, ClientEvent, McpClient, Transport};
use crate::protocol::{
    Offers, ProgressUpdate, initialize_params, parse_initialize_result, parse_tools_page,
};

// ==== Harness ====

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn endpoint(url: &str) -> HttpEndpoint {
    HttpEndpoint::new(
        url,
        vec![
            ("X-Api-Key".into(), "k-123".into()),
            ("Authorization".into(), "Bearer t0k".into()),
        ],
    )
}

fn opts() -> CallOptions {
    CallOptions {
        timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

struct Conn {
    client: Arc<McpClient>,
    inbound: Inbound,
    transport: Arc<dyn Transport>,
    events: mpsc::UnboundedReceiver<ClientEvent>,
}

fn streamable(url: &str) -> (Conn, Arc<StreamableHttp>) {
    let (inbound, events) = Inbound::new("test", vec![]);
    let t = StreamableHttp::new(endpoint(url), reqwest::Client::new(), inbound.clone());
    (conn(inbound, events, t.clone()), t)
}

fn conn(
    inbound: Inbound,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    transport: Arc<dyn Transport>,
) -> Conn {
    Conn {
        client: Arc::new(McpClient::new(inbound.clone(), transport.clone())),
        inbound,
        transport,
        events,
    }
}

/// initialize → negotiated → notifications/initialized; returns the negotiated version.
async fn handshake(c: &Conn) -> String {
    let raw = c
        .client
        .request("initialize", Some(initialize_params(Offers::NONE)), &opts())
        .await
        .unwrap();
    let hello = parse_initialize_result(&raw).unwrap();
    c.transport.negotiated(&hello.protocol_version);
    c.client.notify("notifications/initialized", None).unwrap();
    hello.protocol_version
}

async fn echo(c: &Conn, text: &str) -> Result<String, CallError> {
    let raw = c
        .client
        .call_tool("echo", json!({ "text": text }), &opts())
        .await?;
    let v: Value = serde_json::from_str(raw.get()).unwrap();
    Ok(v["content"][0]["text"].as_str().unwrap().to_owned())
}

fn transport_error(result: Result<impl std::fmt::Debug, CallError>) -> TransportError {
    match result {
        Err(CallError::Transport { source, .. }) => source,
        other => panic!("expected a transport error, got {other:?}"),
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// An event stream body: each event after `gap`; then held open until the client goes away,
/// or ended.
fn sse_body(events: Vec<String>, gap: Duration, keep_open: bool) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        for e in events {
            if tx.send(Bytes::from(e)).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
        if keep_open {
            tx.closed().await;
        }
    });
    sse_response(rx)
}

fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

// ==== A Streamable HTTP server ====

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum GetMode {
    #[default]
    NotAllowed,
    /// First GET: one list_changed (id `e1`), then the stream ends; later GETs: another, held.
    Stream,
}

#[derive(Default)]
struct Mock {
    /// Answer requests with event streams (progress and a ping before the result).
    sse: bool,
    call_delay: Duration,
    initialized_delay: Duration,
    get_mode: GetMode,
    sessions: Mutex<HashSet<String>>,
    issued: AtomicU64,
    /// Every request (not notification) carrying a session gets 404.
    always_404: AtomicBool,
    /// (method, headers) of every POST, plus `initialized-done` markers.
    log: Mutex<Vec<(String, HeaderMap)>>,
    /// What the client sent back for the server's own requests.
    replies: Mutex<Vec<Value>>,
    gets: Mutex<Vec<HeaderMap>>,
    deletes: Mutex<Vec<HeaderMap>>,
    /// Cancelled to end every held GET stream (as a server restart would).
    end_streams: tokio_util::sync::CancellationToken,
}

impl Mock {
    fn log(&self) -> Vec<(String, HeaderMap)> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, method: &str) -> usize {
        self.log().iter().filter(|(m, _)| m == method).count()
    }

    fn rpc(&self, id: &Value, result: Value, before: Vec<Value>) -> Response {
        let answer = json!({ "jsonrpc": "2.0", "id": id, "result": result });
        if !self.sse {
            return axum::Json(answer).into_response();
        }
        let mut events: Vec<String> = before.iter().map(data).collect();
        events.push(format!(
            ": keep-alive\nevent: message\nid: r{id}\n{}",
            data(&answer)
        ));
        sse_body(events, Duration::from_millis(20), false)
    }
}

fn mock_router(m: Arc<Mock>) -> Router {
    Router::new()
        .route("/mcp", post(mock_post).get(mock_get).delete(mock_delete))
        .with_state(m)
}

async fn mock_post(State(m): State<Arc<Mock>>, headers: HeaderMap, body: Bytes) -> Response {
    let msg: Value = serde_json::from_slice(&body).unwrap();
    let method = msg["method"].as_str().unwrap_or("response").to_owned();
    m.log
        .lock()
        .unwrap()
        .push((method.clone(), headers.clone()));
    let id = &msg["id"];
    if method == "initialize" {
        let sid = format!("s{}", m.issued.fetch_add(1, SeqCst) + 1);
        m.sessions.lock().unwrap().insert(sid.clone());
        let result = json!({
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": { "tools": { "listChanged": true } },
            "serverInfo": { "name": "mock", "version": "1" },
        });
        let mut resp = m.rpc(id, result, vec![]);
        resp.headers_mut()
            .insert("mcp-session-id", sid.parse().unwrap());
        return resp;
    }
    let sid = header(&headers, "mcp-session-id").unwrap_or("");
    let known = m.sessions.lock().unwrap().contains(sid);
    if !known || (m.always_404.load(SeqCst) && !id.is_null()) {
        return (StatusCode::NOT_FOUND, "session not found").into_response();
    }
    if method == "response" {
        m.replies.lock().unwrap().push(msg);
        return StatusCode::ACCEPTED.into_response();
    }
    if id.is_null() {
        if method == "notifications/initialized" {
            tokio::time::sleep(m.initialized_delay).await;
            m.log
                .lock()
                .unwrap()
                .push(("initialized-done".into(), headers));
        }
        return StatusCode::ACCEPTED.into_response();
    }
    match method.as_str() {
        "tools/list" => {
            let tools =
                json!({ "tools": [{ "name": "echo", "inputSchema": { "type": "object" } }] });
            m.rpc(id, tools, vec![])
        }
        "tools/call" => call(&m, id, &msg["params"]).await,
        _ => axum::Json(
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": "nope" } }),
        )
        .into_response(),
    }
}

async fn call(m: &Mock, id: &Value, params: &Value) -> Response {
    let big = || "x".repeat(10 << 20);
    match params["name"].as_str().unwrap() {
        "echo" => {
            tokio::time::sleep(m.call_delay).await;
            let text = &params["arguments"]["text"];
            let result = json!({ "content": [{ "type": "text", "text": text }] });
            let token = &params["_meta"]["progressToken"];
            let before = if token.is_null() {
                vec![]
            } else {
                let progress = |p| {
                    json!({ "jsonrpc": "2.0", "method": "notifications/progress",
                    "params": { "progressToken": token, "progress": p, "total": 2 } })
                };
                let ping =
                    json!({ "jsonrpc": "2.0", "id": format!("srv-ping-{id}"), "method": "ping" });
                vec![progress(1), ping, progress(2)]
            };
            m.rpc(id, result, before)
        }
        // An array: tolerated although MCP dropped batches.
        "batch" => axum::Json(json!([
            { "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "info", "data": "hi" } },
            { "jsonrpc": "2.0", "id": id, "result": { "batched": true } },
        ]))
        .into_response(),
        // 200 with an empty body: the answer is missing.
        "empty" => (StatusCode::OK, [("content-type", "application/json")]).into_response(),
        "boom" => (StatusCode::INTERNAL_SERVER_ERROR, "boom: internal failure").into_response(),
        "html" => ([("content-type", "text/html")], "<html>hi</html>").into_response(),
        // 10 MB with a Content-Length.
        "big" => axum::Json(json!({ "jsonrpc": "2.0", "id": id, "result": { "x": big() } }))
            .into_response(),
        // 10 MB chunked, no Content-Length: the cap is enforced while reading.
        "big-chunked" => {
            let chunks: Vec<String> = (0..10).map(|_| "x".repeat(1 << 20)).collect();
            let mut resp = sse_body(chunks, Duration::ZERO, false);
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp
        }
        // One 10 MB event, then the stream ends without the answer.
        "big-event" => sse_body(vec![format!("data: {}\n\n", big())], Duration::ZERO, false),
        "messy" => messy_answer(id),
        other => panic!("unknown tool {other}"),
    }
}

/// A valid but messy event stream, sent 3 bytes at a time: a BOM, a comment, CR, LF and CRLF
/// line ends (a CR ending one chunk and its LF starting the next), a block without data, an
/// unknown event type, a `data` field without a colon, data that is not a message, and the
/// answer pretty-printed over several `data` lines with its UTF-8 split across chunks.
fn messy_answer(id: &Value) -> Response {
    let result = json!({ "content": [{ "type": "text", "text": "é€😀" }] });
    let answer = json!({ "jsonrpc": "2.0", "id": id, "result": result });
    let mut stream =
        b"\xEF\xBB\xBF: hello\r\nid: 7\r\n\r\nevent: other\ndata: not json\n\n".to_vec();
    stream.extend_from_slice(b"data\r\rdata: {}\n\n");
    let pretty = serde_json::to_string_pretty(&answer).unwrap();
    for (i, line) in pretty.lines().enumerate() {
        stream.extend_from_slice(b"data: ");
        stream.extend_from_slice(line.as_bytes());
        stream.extend_from_slice([&b"\r\n"[..], b"\r", b"\n"][i % 3]);
    }
    stream.extend_from_slice(b"\r\n");
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        for chunk in stream.chunks(3) {
            if tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    sse_response(rx)
}

async fn mock_get(State(m): State<Arc<Mock>>, headers: HeaderMap) -> Response {
    let n = {
        let mut gets = m.gets.lock().unwrap();
        gets.push(headers);
        gets.len()
    };
    if m.get_mode == GetMode::NotAllowed {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let sid = header(&m.gets.lock().unwrap()[n - 1], "mcp-session-id").map(str::to_owned);
    if !sid.is_some_and(|sid| m.sessions.lock().unwrap().contains(&sid)) {
        return (StatusCode::NOT_FOUND, "session not found").into_response();
    }
    let changed = json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" });
    let event = format!("id: e{n}\n{}", data(&changed));
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let end = m.end_streams.clone();
    tokio::spawn(async move {
        if tx.send(Bytes::from(event)).await.is_ok() && n > 1 {
            tokio::select! {
                () = tx.closed() => {}
                () = end.cancelled() => {}
            }
        }
    });
    sse_response(rx)
}

async fn mock_delete(State(m): State<Arc<Mock>>, headers: HeaderMap) -> StatusCode {
    m.deletes.lock().unwrap().push(headers);
    StatusCode::OK
}

async fn start(mock: Mock) -> (Arc<Mock>, String) {
    let m = Arc::new(mock);
    let url = format!("{}/mcp", serve(mock_router(m.clone())).await);
    (m, url)
}

// ==== Streamable HTTP ====

#[tokio::test]
async fn json_answers_carry_configured_session_and_protocol_headers() {
    let (m, url) = start(Mock::default()).await;
    let (c, t) = streamable(&url);
    let version = handshake(&c).await;
    let page = c.client.request("tools/list", None, &opts()).await.unwrap();
    assert_eq!(parse_tools_page(&page).unwrap().tools[0]["name"], "echo");
    assert_eq!(echo(&c, "hi").await.unwrap(), "hi");
    assert_eq!(t.session_id().as_deref(), Some("s1"));

    let log = m.log();
    let methods: Vec<&str> = log.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        methods,
        [
            "initialize",
            "notifications/initialized",
            "initialized-done",
            "tools/list",
            "tools/call"
        ]
    );
    for (_, h) in &log {
        assert_eq!(header(h, "x-api-key"), Some("k-123"));
        assert_eq!(header(h, "authorization"), Some("Bearer t0k"));
        assert_eq!(header(h, "content-type"), Some("application/json"));
        assert_eq!(
            header(h, "accept"),
            Some("application/json, text/event-stream")
        );
    }
    let init = &log[0].1;
    assert!(init.get("mcp-session-id").is_none() && init.get("mcp-protocol-version").is_none());
    for (_, h) in &log[1..] {
        assert_eq!(header(h, "mcp-session-id"), Some("s1"));
        assert_eq!(header(h, "mcp-protocol-version"), Some(version.as_str()));
    }
    // The server has no GET stream (405): the transport asked once and stopped.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(m.gets.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn event_stream_answers_deliver_progress_first_and_server_requests_are_answered() {
    let (m, url) = start(Mock {
        sse: true,
        ..Default::default()
    })
    .await;
    let (c, _t) = streamable(&url);
    handshake(&c).await;
    let seen = Arc::new(Mutex::new(Vec::<ProgressUpdate>::new()));
    let sink = seen.clone();
    let with_progress = CallOptions {
        progress: Some(Arc::new(move |u| sink.lock().unwrap().push(u))),
        ..opts()
    };
    let raw = c
        .client
        .call_tool("echo", json!({ "text": "streamed" }), &with_progress)
        .await;
    let v: Value = serde_json::from_str(raw.unwrap().get()).unwrap();
    assert_eq!(v["content"][0]["text"], "streamed");
    let progress: Vec<Value> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|u| u.progress.clone())
        .collect();
    assert_eq!(
        progress,
        [json!(1), json!(2)],
        "progress arrives before the result"
    );
    // The server's ping, sent mid-stream, was answered with a POST.
    eventually("the ping reply", || !m.replies.lock().unwrap().is_empty()).await;
    let reply = m.replies.lock().unwrap()[0].clone();
    assert_eq!(reply["id"], "srv-ping-2");
    assert_eq!(reply["result"], json!({}));
}

#[tokio::test]
async fn an_expired_session_is_reinitialized_once_and_the_request_retried() {
    let (m, url) = start(Mock {
        sse: true,
        ..Default::default()
    })
    .await;
    let (mut c, t) = streamable(&url);
    handshake(&c).await;
    eventually("notifications/initialized", || {
        m.count("initialized-done") == 1
    })
    .await;
    m.sessions.lock().unwrap().clear(); // the server forgets the session: 404 from now on
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let client = c.client.clone();
            tokio::spawn(async move { client.request("tools/list", None, &opts()).await })
        })
        .collect();
    for call in calls {
        let page = call.await.unwrap().unwrap();
        assert_eq!(parse_tools_page(&page).unwrap().tools.len(), 1);
    }
    assert_eq!(
        m.count("initialize"),
        2,
        "five concurrent 404s re-initialize once"
    );
    assert_eq!(m.count("notifications/initialized"), 2);
    assert_eq!(t.session_id().as_deref(), Some("s2"));
    let log = m.log();
    let retried = log.iter().rev().find(|(m, _)| m == "tools/list").unwrap();
    assert_eq!(header(&retried.1, "mcp-session-id"), Some("s2"));
    // The replayed initialize is the original line, without a session header.
    let inits: Vec<_> = log.iter().filter(|(m, _)| m == "initialize").collect();
    assert!(inits[1].1.get("mcp-session-id").is_none());
    assert_eq!(echo(&c, "after").await.unwrap(), "after");
    // A new session may serve other tools: the client is told to re-read them, once.
    let event = tokio::time::timeout(Duration::from_secs(5), c.events.recv()).await;
    assert_eq!(event.unwrap(), Some(ClientEvent::ToolsChanged));
    assert!(c.events.try_recv().is_err());
}

/// A server that restarted answers the GET stream of the old session with 404: the client
/// re-initializes (as after a POST's 404), re-reads the tools, and opens the new session's
/// stream without the old session's `Last-Event-ID`.
#[tokio::test]
async fn a_404_on_the_get_stream_reinitializes_and_the_new_stream_starts_fresh() {
    let (m, url) = start(Mock {
        get_mode: GetMode::Stream,
        ..Default::default()
    })
    .await;
    let (mut c, t) = streamable(&url);
    handshake(&c).await;
    let next = async |c: &mut Conn| {
        tokio::time::timeout(Duration::from_secs(5), c.events.recv())
            .await
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(next(&mut c).await, Some(ClientEvent::ToolsChanged));
        c.inbound.tools_changed_handled();
    }
    // The server restarts: it forgets the session and its streams end.
    m.sessions.lock().unwrap().clear();
    m.end_streams.cancel();
    assert_eq!(next(&mut c).await, Some(ClientEvent::ToolsChanged));
    assert_eq!(t.session_id().as_deref(), Some("s2"));
    assert_eq!(m.count("initialize"), 2);
    eventually("a GET on the new session", || {
        m.gets
            .lock()
            .unwrap()
            .iter()
            .any(|h| header(h, "mcp-session-id") == Some("s2"))
    })
    .await;
    let gets = m.gets.lock().unwrap().clone();
    let stale = gets
        .iter()
        .filter(|h| header(h, "mcp-session-id") == Some("s1"))
        .count();
    assert_eq!(stale, 3, "two streams, then the 404");
    let fresh = gets
        .iter()
        .find(|h| header(h, "mcp-session-id") == Some("s2"))
        .unwrap();
    assert!(fresh.get("last-event-id").is_none(), "{fresh:?}");
    assert_eq!(echo(&c, "after").await.unwrap(), "after");
}

#[tokio::test]
async fn a_second_404_fails_the_request() {
    let (m, url) = start(Mock::default()).await;
    let (c, _t) = streamable(&url);
    handshake(&c).await;
    m.always_404.store(true, SeqCst);
    let err = transport_error(c.client.request("tools/list", None, &opts()).await);
    assert!(
        matches!(err, TransportError::Http { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("HTTP 404 from {url}: session not found")
    );
    assert_eq!(m.count("initialize"), 2, "re-initialized once");
    assert_eq!(m.count("tools/list"), 2, "retried once");
}

#[tokio::test]
async fn a_hundred_calls_run_concurrently() {
    for sse in [false, true] {
        let call_delay = Duration::from_millis(200);
        let (_m, url) = start(Mock {
            sse,
            call_delay,
            ..Default::default()
        })
        .await;
        let (c, _t) = streamable(&url);
        handshake(&c).await;
        let started = Instant::now();
        let c = Arc::new(c);
        let calls: Vec<_> = (0..100)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { (i, echo(&c, &format!("call {i}")).await) })
            })
            .collect();
        for call in calls {
            let (i, text) = call.await.unwrap();
            assert_eq!(text.unwrap(), format!("call {i}"));
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "100 × 200 ms calls took {took:?} (sse: {sse})"
        );
    }
}

#[tokio::test]
async fn a_notification_is_delivered_before_later_messages() {
    let initialized_delay = Duration::from_millis(300);
    let (m, url) = start(Mock {
        initialized_delay,
        ..Default::default()
    })
    .await;
    let (c, _t) = streamable(&url);
    c.client
        .request("initialize", Some(initialize_params(Offers::NONE)), &opts())
        .await
        .unwrap();
    c.client.notify("notifications/initialized", None).unwrap();
    c.client.request("tools/list", None, &opts()).await.unwrap();
    let methods: Vec<String> = m.log().into_iter().map(|(m, _)| m).collect();
    assert_eq!(
        methods,
        [
            "initialize",
            "notifications/initialized",
            "initialized-done",
            "tools/list"
        ]
    );
}

#[tokio::test]
async fn the_get_stream_delivers_list_changed_and_resumes_with_last_event_id() {
    let (m, url) = start(Mock {
        get_mode: GetMode::Stream,
        ..Default::default()
    })
    .await;
    let (mut c, t) = streamable(&url);
    let version = handshake(&c).await;
    let next = async |c: &mut Conn| {
        tokio::time::timeout(Duration::from_secs(5), c.events.recv())
            .await
            .unwrap()
    };
    assert_eq!(next(&mut c).await, Some(ClientEvent::ToolsChanged));
    c.inbound.tools_changed_handled();
    // The first stream ended; the second (after a 1 s backoff) resumes after `e1`.
    assert_eq!(next(&mut c).await, Some(ClientEvent::ToolsChanged));
    {
        let gets = m.gets.lock().unwrap();
        assert_eq!(gets.len(), 2);
        for h in gets.iter() {
            assert_eq!(header(h, "accept"), Some("text/event-stream"));
            assert_eq!(header(h, "mcp-session-id"), Some("s1"));
            assert_eq!(header(h, "mcp-protocol-version"), Some(version.as_str()));
            assert_eq!(header(h, "x-api-key"), Some("k-123"));
        }
        assert!(gets[0].get("last-event-id").is_none());
        assert_eq!(header(&gets[1], "last-event-id"), Some("e1"));
    }
    // Close: the session is ended with a DELETE, and sends fail fast.
    c.client.close("test over");
    eventually("the DELETE", || !m.deletes.lock().unwrap().is_empty()).await;
    let delete = m.deletes.lock().unwrap()[0].clone();
    assert_eq!(header(&delete, "mcp-session-id"), Some("s1"));
    assert_eq!(header(&delete, "authorization"), Some("Bearer t0k"));
    let err = t
        .send(Outgoing::Notification {
            line: b"{}".to_vec(),
        })
        .unwrap_err();
    assert!(matches!(err, TransportError::Closed(_)));
}

#[tokio::test]
async fn oversized_answers_fail_cleanly() {
    let limit = "larger than the 4 MiB limit";
    for (sse, tool, expected) in [
        (false, "big", limit),
        (false, "big-chunked", limit),
        (
            false,
            "big-event",
            "ended before the answer to request 2 (1 event(s) over the 4194304-byte limit skipped)",
        ),
    ] {
        let (_m, url) = start(Mock {
            sse,
            ..Default::default()
        })
        .await;
        let (c, _t) = streamable(&url);
        handshake(&c).await;
        let err = transport_error(c.client.call_tool(tool, json!({}), &opts()).await);
        assert!(matches!(err, TransportError::Protocol(_)), "{err:?}");
        assert!(err.to_string().contains(expected), "{tool}: {err}");
        assert!(err.to_string().contains(&url), "{err}");
        // The connection is still usable.
        assert_eq!(echo(&c, "still here").await.unwrap(), "still here");
    }
}

#[tokio::test]
async fn messy_event_streams_are_read_per_the_standard() {
    let (_m, url) = start(Mock::default()).await;
    let (c, _t) = streamable(&url);
    handshake(&c).await;
    let raw = c
        .client
        .call_tool("messy", json!({}), &opts())
        .await
        .unwrap();
    let result: Value = serde_json::from_str(raw.get()).unwrap();
    assert_eq!(result["content"][0]["text"], "é€😀");
    assert_eq!(
        c.inbound.invalid_lines(),
        1,
        "the `{{}}` data (empty data is a priming event)"
    );
    assert_eq!(echo(&c, "still here").await.unwrap(), "still here");
}

#[tokio::test]
async fn http_errors_are_precise() {
    let (_m, url) = start(Mock::default()).await;
    let (c, _t) = streamable(&url);
    handshake(&c).await;
    let err = c
        .client
        .call_tool("boom", json!({}), &opts())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("server `test`: HTTP 500 from {url}: boom: internal failure")
    );
    let err = transport_error(c.client.call_tool("html", json!({}), &opts()).await);
    assert_eq!(
        err.to_string(),
        format!("unexpected content type text/html from {url}")
    );
}

/// Transport errors become failure reasons (`/api/health`, logs): they name the endpoint as
/// shown, never its userinfo or query values, whatever reqwest says about the URL.
#[tokio::test]
async fn errors_name_the_endpoint_as_shown_never_its_secrets() {
    let (_m, url) = start(Mock::default()).await;
    let base = url.trim_start_matches("http://");
    let secret = format!("http://u:pw-secret-1@{base}?api_key=key-secret-2");
    let (c, _t) = streamable(&secret);
    handshake(&c).await;
    let err = c
        .client
        .call_tool("boom", json!({}), &opts())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "server `test`: HTTP 500 from http://***@{base}?api_key=***: boom: internal failure"
        )
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = listener.local_addr().unwrap();
    drop(listener);
    for url in [
        format!("http://u:pw-secret-1@{gone}/mcp?api_key=key-secret-2"),
        format!("http://{gone}/mcp?api_key=key-secret-2"),
    ] {
        let (c, _t) = streamable(&url);
        let err = transport_error(
            c.client
                .request("initialize", Some(initialize_params(Offers::NONE)), &opts())
                .await,
        );
        let text = err.to_string();
        assert!(text.contains("?api_key=***"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
    let shown = HttpEndpoint::new(secret, vec![]);
    assert_eq!(shown.shown, format!("http://***@{base}?api_key=***"));
    assert!(!format!("{shown:?}").contains("secret"), "{shown:?}");
}

#[tokio::test]
async fn json_arrays_are_tolerated_and_missing_answers_fail() {
    let (_m, url) = start(Mock::default()).await;
    let (c, _t) = streamable(&url);
    handshake(&c).await;
    let raw = c
        .client
        .call_tool("batch", json!({}), &opts())
        .await
        .unwrap();
    assert_eq!(raw.get(), r#"{"batched":true}"#);
    let err = transport_error(c.client.call_tool("empty", json!({}), &opts()).await);
    assert_eq!(
        err.to_string(),
        format!("the JSON response from {url} did not answer request 3")
    );
}

#[tokio::test]
async fn connection_refused_is_precise() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    drop(listener);
    let (c, _t) = streamable(&url);
    let err = transport_error(
        c.client
            .request("initialize", Some(initialize_params(Offers::NONE)), &opts())
            .await,
    );
    assert_eq!(err.to_string(), format!("connection refused to {url}"));
    assert!(!is_not_streamable(&err));
}

#[tokio::test]
async fn invalid_configured_headers_fail_sends() {
    let (inbound, _events) = Inbound::new("test", vec![]);
    let bad = HttpEndpoint::new(
        "http://127.0.0.1:1/mcp",
        vec![("X-Bad".into(), "line\nbreak".into())],
    );
    let t = StreamableHttp::new(bad, reqwest::Client::new(), inbound);
    let err = t
        .send(Outgoing::Notification {
            line: b"{}".to_vec(),
        })
        .unwrap_err();
    assert!(
        err.to_string().starts_with("invalid header `X-Bad`"),
        "{err}"
    );
    assert!(
        !format!("{:?}", endpoint("http://x/")).contains("t0k"),
        "Debug redacts values"
    );
    let (inbound, _events) = Inbound::new("test", vec![]);
    let t = StreamableHttp::new(endpoint("http://x/"), reqwest::Client::new(), inbound);
    assert!(!format!("{t:?}").contains("t0k"), "{t:?}");
}

// ==== Legacy SSE ====

#[derive(Default)]
struct Legacy {
    /// The `endpoint` event's data; `None`: never sent.
    endpoint: Option<String>,
    stream: Mutex<Option<mpsc::Sender<Bytes>>>,
    posts: Mutex<Vec<(String, HeaderMap)>>,
}

fn legacy_router(l: Arc<Legacy>) -> Router {
    Router::new()
        .route("/sse", get(legacy_get))
        .route("/messages", post(legacy_post))
        .with_state(l)
}

async fn legacy_get(State(l): State<Arc<Legacy>>) -> Response {
    let (tx, rx) = mpsc::channel(64);
    match &l.endpoint {
        Some(endpoint) => {
            tx.send(Bytes::from(format!(
                "event: endpoint\ndata: {endpoint}\n\n"
            )))
            .await
            .unwrap();
        }
        None => tx.send(Bytes::from(": waiting\n\n")).await.unwrap(),
    }
    *l.stream.lock().unwrap() = Some(tx);
    sse_response(rx)
}

async fn legacy_post(State(l): State<Arc<Legacy>>, headers: HeaderMap, body: Bytes) -> Response {
    let msg: Value = serde_json::from_slice(&body).unwrap();
    let method = msg["method"].as_str().unwrap_or("response").to_owned();
    l.posts.lock().unwrap().push((method.clone(), headers));
    let result = match method.as_str() {
        "initialize" => Some(json!({ "protocolVersion": "2024-11-05", "capabilities": {},
            "serverInfo": { "name": "legacy", "version": "1" } })),
        "tools/list" => Some(json!({ "tools": [{ "name": "echo", "inputSchema": {} }] })),
        "tools/call" if msg["params"]["name"] == "echo" => Some(
            json!({ "content": [{ "type": "text", "text": msg["params"]["arguments"]["text"] }] }),
        ),
        _ => None, // notifications, and `hang` (never answered)
    };
    if let Some(result) = result {
        let answer = json!({ "jsonrpc": "2.0", "id": msg["id"], "result": result });
        let tx = l.stream.lock().unwrap().clone().unwrap();
        tx.send(Bytes::from(format!("event: message\n{}", data(&answer))))
            .await
            .unwrap();
    }
    (StatusCode::ACCEPTED, "Accepted").into_response()
}

async fn legacy_server(endpoint: Option<&str>) -> (Arc<Legacy>, String) {
    let l = Arc::new(Legacy {
        endpoint: endpoint.map(str::to_owned),
        ..Default::default()
    });
    let base = serve(legacy_router(l.clone())).await;
    (l, base)
}

async fn legacy(url: &str, timeout: Duration) -> Result<(Conn, Arc<LegacySse>), TransportError> {
    let (inbound, events) = Inbound::new("test", vec![]);
    let t = connect_legacy_sse(
        endpoint(url),
        reqwest::Client::new(),
        inbound.clone(),
        timeout,
    )
    .await?;
    Ok((conn(inbound, events, t.clone()), t))
}

#[tokio::test]
async fn legacy_sse_posts_to_the_endpoint_and_reads_answers_from_the_stream() {
    let (l, base) = legacy_server(Some("/messages?sessionId=abc")).await;
    let (mut c, t) = legacy(&format!("{base}/sse"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(t.post_url(), format!("{base}/messages?sessionId=abc"));
    assert_eq!(handshake(&c).await, "2024-11-05");
    let page = c.client.request("tools/list", None, &opts()).await.unwrap();
    assert_eq!(parse_tools_page(&page).unwrap().tools.len(), 1);
    assert_eq!(echo(&c, "legacy").await.unwrap(), "legacy");
    {
        let posts = l.posts.lock().unwrap();
        let methods: Vec<&str> = posts.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(
            methods,
            [
                "initialize",
                "notifications/initialized",
                "tools/list",
                "tools/call"
            ]
        );
        for (_, h) in posts.iter() {
            assert_eq!(header(h, "x-api-key"), Some("k-123"));
            assert_eq!(header(h, "content-type"), Some("application/json"));
        }
    }
    // The stream ends while a call is pending: the call fails and the client hears of it.
    let client = c.client.clone();
    let pending = tokio::spawn(async move { client.call_tool("hang", json!({}), &opts()).await });
    eventually("the hanging call", || l.posts.lock().unwrap().len() == 5).await;
    l.stream.lock().unwrap().take();
    let err = pending.await.unwrap().unwrap_err();
    let expected = format!("SSE stream ended: {base}/sse closed the stream");
    assert!(
        matches!(&err, CallError::Closed { reason, .. } if *reason == expected),
        "{err:?}"
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), c.events.recv())
        .await
        .unwrap();
    assert_eq!(closed, Some(ClientEvent::Closed(expected)));
}

#[tokio::test]
async fn legacy_sse_refuses_another_origin_and_times_out_without_an_endpoint() {
    let (_l, base) = legacy_server(Some("http://elsewhere.example:8080/messages")).await;
    let err = legacy(&format!("{base}/sse"), Duration::from_secs(5))
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("points at another origin (http://elsewhere.example:8080/messages)"),
        "{err}"
    );

    let (_l, base) = legacy_server(None).await;
    let started = Instant::now();
    let err = legacy(&format!("{base}/sse"), Duration::from_millis(300))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!("no `endpoint` event from {base}/sse within 0.3s")
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    let err = legacy(&format!("{base}/nothing"), Duration::from_secs(5))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, TransportError::Http { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn streamable_falls_back_to_legacy_sse_on_an_sse_only_server() {
    let (_l, base) = legacy_server(Some("messages?sessionId=xyz")).await;
    let url = format!("{base}/sse");
    let (c, _t) = streamable(&url);
    let err = transport_error(
        c.client
            .request("initialize", Some(initialize_params(Offers::NONE)), &opts())
            .await,
    );
    assert!(is_not_streamable(&err), "{err:?}");
    c.client.close("falling back");
    let (c, t) = legacy(&url, Duration::from_secs(5)).await.unwrap();
    assert_eq!(t.post_url(), format!("{base}/messages?sessionId=xyz"));
    handshake(&c).await;
    assert_eq!(echo(&c, "fell back").await.unwrap(), "fell back");

    // A POST answered with an `endpoint` event is "not streamable" too.
    let router = Router::new().route(
        "/both",
        post(|| async {
            sse_body(
                vec!["event: endpoint\ndata: /m\n\n".into()],
                Duration::ZERO,
                false,
            )
        }),
    );
    let url = format!("{}/both", serve(router).await);
    let (c, _t) = streamable(&url);
    let err = transport_error(c.client.request("initialize", None, &opts()).await);
    assert!(
        matches!(err, TransportError::NotStreamable(_)) && is_not_streamable(&err),
        "{err:?}"
    );
}

// ==== Discovery ====

#[tokio::test]
async fn discovery_reads_every_documented_shape() {
    let seen = Arc::new(Mutex::new(None::<HeaderMap>));
    let record = seen.clone();
    let doc = |v: Value| get(move || async move { axum::Json(v) });
    let router = Router::new()
        .route("/a", doc(json!({ "endpoint": "/mcp" })))
        .route("/dir/b", doc(json!({ "url": "mcp" })))
        .route(
            "/c",
            doc(json!({ "mcp_endpoint": "https://mcp.example.com/x" })),
        )
        .route(
            "/d",
            doc(json!({ "endpoints": { "streamableHttp": "/mcp", "sse": "/sse" } })),
        )
        .route(
            "/e",
            doc(json!({ "endpoints": { "streamable-http": "/m" } })),
        )
        .route(
            "/f",
            doc(json!({ "endpoints": { "streamable_http": "/m1", "http": "/m2" } })),
        )
        .route(
            "/g",
            doc(json!({ "name": "io.example/srv", "remotes": [
            { "type": "sse", "url": "/legacy" },
            { "type": "streamable-http", "url": "/new" },
            { "type": "streamable-http", "url": "/second" },
        ] })),
        )
        .route("/none", doc(json!({ "name": "nothing here" })))
        .route("/text", get(|| async { "not json" }))
        .route("/huge", get(|| async { "x".repeat(2 << 20) }))
        .route(
            "/.well-known/mcp",
            get(move |h: HeaderMap| async move {
                *record.lock().unwrap() = Some(h);
                axum::Json(json!({ "endpoint": "/mcp" }))
            }),
        );
    let base = serve(router).await;
    let http = reqwest::Client::new();
    let headers = endpoint("").headers;
    let find = async |path: &str| {
        discover(
            &HttpEndpoint::new(format!("{base}{path}"), headers.clone()),
            &http,
            Duration::from_secs(5),
        )
        .await
    };
    let both = |u: &str| Discovered {
        streamable: Some(u.into()),
        sse: Some(u.into()),
    };
    let mcp = format!("{base}/mcp");

    assert_eq!(find("/a").await.unwrap(), both(&mcp));
    assert_eq!(
        find("/dir/b").await.unwrap(),
        both(&format!("{base}/dir/mcp"))
    );
    assert_eq!(find("/c").await.unwrap(), both("https://mcp.example.com/x"));
    let d = find("/d").await.unwrap();
    assert_eq!(
        (d.streamable, d.sse),
        (Some(mcp.clone()), Some(format!("{base}/sse")))
    );
    let e = find("/e").await.unwrap();
    assert_eq!((e.streamable, e.sse), (Some(format!("{base}/m")), None));
    assert_eq!(
        find("/f").await.unwrap().streamable,
        Some(format!("{base}/m1"))
    );
    let g = find("/g").await.unwrap();
    assert_eq!(
        (g.streamable, g.sse),
        (Some(format!("{base}/new")), Some(format!("{base}/legacy")))
    );
    // A bare origin means its well-known document; the configured headers go along.
    assert_eq!(find("").await.unwrap(), both(&mcp));
    let h = seen.lock().unwrap().clone().unwrap();
    assert_eq!(header(&h, "x-api-key"), Some("k-123"));

    let err = find("/none").await.unwrap_err().to_string();
    assert!(err.contains("names no MCP endpoint"), "{err}");
    assert!(
        find("/text")
            .await
            .unwrap_err()
            .to_string()
            .contains("is not JSON")
    );
    assert!(
        find("/huge")
            .await
            .unwrap_err()
            .to_string()
            .contains("larger than the 1 MiB limit")
    );
    let err = find("/missing").await.unwrap_err();
    assert!(
        matches!(err, TransportError::Http { status: 404, .. }),
        "{err:?}"
    );
}

#[test]
fn discovery_refuses_plain_http_endpoints_from_https_documents() {
    let err = parse_document(
        &json!({ "url": "http://x.example/mcp" }),
        "https://x.example/d",
    );
    assert!(err.unwrap_err().contains("plain-http"));
    let ok = parse_document(&json!({ "url": "//x.example/mcp" }), "https://x.example/d");
    assert_eq!(
        ok.unwrap().streamable.as_deref(),
        Some("https://x.example/mcp")
    );
}

#[test]
fn fallback_rule() {
    let http = |status| TransportError::Http {
        status,
        url: "u".into(),
        body: "b".into(),
    };
    for status in [404, 405, 415] {
        assert!(is_not_streamable(&http(status)));
    }
    for status in [400, 401, 403, 500, 502] {
        assert!(!is_not_streamable(&http(status)));
    }
    assert!(is_not_streamable(&TransportError::NotStreamable(
        "x".into()
    )));
    assert!(!is_not_streamable(&TransportError::Io(
        "connection refused to u".into()
    )));
}

// ==== URL resolution ====

#[test]
fn urls_resolve_like_rfc_3986() {
    let base = parse_url("http://a.example:8080/b/c/d?q#f").unwrap();
    let resolve = |base: &Url, reference: &str| resolve_url(base, reference).map(String::from);
    for (reference, expected) in [
        (
            "/message?sessionId=1",
            "http://a.example:8080/message?sessionId=1",
        ),
        ("g", "http://a.example:8080/b/c/g"),
        ("./g", "http://a.example:8080/b/c/g"),
        ("g/", "http://a.example:8080/b/c/g/"),
        ("../g", "http://a.example:8080/b/g"),
        ("../..", "http://a.example:8080/"),
        ("../../../../g", "http://a.example:8080/g"),
        ("/./g/.", "http://a.example:8080/g/"),
        ("?y", "http://a.example:8080/b/c/d?y"),
        ("", "http://a.example:8080/b/c/d?q"),
        ("#s", "http://a.example:8080/b/c/d?q"),
        ("g#s", "http://a.example:8080/b/c/g"),
        ("//other.example/x", "http://other.example/x"),
        // Scheme and host are case-insensitive: normalised to lower case.
        ("HTTPS://Other.example/x?y", "https://other.example/x?y"),
        ("  /padded  ", "http://a.example:8080/padded"),
    ] {
        assert_eq!(
            resolve(&base, reference).unwrap(),
            expected,
            "{reference:?}"
        );
    }
    let h = parse_url("http://h").unwrap();
    assert_eq!(resolve(&h, "m").unwrap(), "http://h/m");
    let sse = parse_url("http://h/sse").unwrap();
    assert_eq!(resolve(&sse, "messages").unwrap(), "http://h/messages");
    for bad in [
        "ftp://h/x",
        "mailto:a@b",
        "/a b",
        "http://[::1/x",
        "http://h:99999/",
    ] {
        assert!(resolve(&base, bad).is_err(), "{bad:?}");
    }
    for bad in [
        "a.example/x",
        "/relative",
        "http://",
        "file:///etc",
        "http://exa mple/",
        "http://h:99999/",
    ] {
        assert!(parse_url(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        parse_url("ftp://h/x").unwrap_err(),
        "unsupported scheme `ftp` in `ftp://h/x` (expected http or https)"
    );
}

#[test]
fn origins_compare_scheme_host_and_effective_port() {
    let same = |a: &str, b: &str| match (parse_url(a), parse_url(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    };
    assert!(same("http://H.example/a", "http://h.example:80/b?c"));
    assert!(same("https://u:p@h/a", "https://h:443/"));
    assert!(same("http://[::1]:9/a", "http://[::1]:9/b"));
    assert!(!same("http://[::1]:9/a", "http://[::1]/b"));
    assert!(!same("http://h/a", "https://h/a"));
    assert!(!same("http://h:1/a", "http://h:2/a"));
    assert!(!same("http://h/a", "not a url"));
}

// ==== The official server (gated) ====

/// `server-everything` from the test cache, when `REVKA_TEST_CACHE` points at one.
fn everything_server() -> Option<std::path::PathBuf> {
    let cache = std::env::var_os("REVKA_TEST_CACHE")?;
    let bin = std::path::Path::new(&cache).join("npm/node_modules/.bin/mcp-server-everything");
    bin.exists().then_some(bin)
}

/// A node server in its own process group, killed (group and all) on drop.
struct NodeServer {
    child: tokio::process::Child,
}

impl NodeServer {
    async fn start(bin: &std::path::Path, mode: &str) -> (Self, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(bin)
            .arg(mode)
            .env("PORT", port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "{mode} server did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (Self { child }, port)
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SIGKILL to its whole process group (npx and node), with kill(1): this crate does
            // not link nix.
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

async fn everything_session(c: &Conn) {
    handshake(c).await;
    let page = c.client.request("tools/list", None, &opts()).await.unwrap();
    let page = parse_tools_page(&page).unwrap();
    assert!(
        page.tools.iter().any(|t| t["name"] == "echo"),
        "{:?}",
        page.tools
    );
    let raw = c
        .client
        .call_tool("echo", json!({ "message": "hello" }), &opts())
        .await
        .unwrap();
    let v: Value = serde_json::from_str(raw.get()).unwrap();
    assert_eq!(v["content"][0]["text"], "Echo: hello", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_with_the_official_everything_server() {
    let Some(bin) = everything_server() else {
        eprintln!(
            "skipped: set REVKA_TEST_CACHE to a cache with npm/node_modules/.bin/mcp-server-everything"
        );
        return;
    };
    let (server, port) = NodeServer::start(&bin, "streamableHttp").await;
    let (c, t) = streamable(&format!("http://127.0.0.1:{port}/mcp"));
    everything_session(&c).await;
    assert!(t.session_id().is_some());
    c.client.close("test over");
    drop(server);

    let (server, port) = NodeServer::start(&bin, "sse").await;
    let base = format!("http://127.0.0.1:{port}");
    let (c, t) = legacy(&format!("{base}/sse"), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        t.post_url()
            .starts_with(&format!("{base}/message?sessionId=")),
        "{}",
        t.post_url()
    );
    everything_session(&c).await;
    c.client.close("test over");
    drop(server);
}
