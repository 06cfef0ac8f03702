//! Resumability (MCP 2025-11-25) over real sockets: a server that closes a POST's event stream
//! after a priming event, and one whose GET stream ends with a `retry`; the client waits the
//! server's `retry`, resumes with `Last-Event-ID`, and gives up after a bounded number of
//! fruitless attempts.

use super::*;

/// A server whose `tools/call` streams only a priming event (`id: p1`, `retry: RETRY_MS`)
/// and closes; its GETs answer by `get_answers`: the call's answer after a priming event of
/// their own, or (when false) only a priming event before closing.
struct Resumable {
    get_answers: bool,
    /// The pending call's id, answered on the next GET.
    pending: Mutex<Option<Value>>,
    /// When the POST stream was closed.
    closed_at: Mutex<Option<Instant>>,
    /// For each GET: when it came and its `Last-Event-ID`.
    gets: Mutex<Vec<(Instant, Option<String>)>>,
}

const RETRY_MS: u64 = 400;

fn primer(id: &str, retry: u64) -> String {
    format!("id: {id}\nretry: {retry}\ndata: \n\n")
}

async fn resumable_post(State(r): State<Arc<Resumable>>, body: Bytes) -> Response {
    let msg: Value = serde_json::from_slice(&body).unwrap();
    let id = msg["id"].clone();
    let method = msg["method"].as_str().unwrap_or("");
    let result = match method {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": { "tools": {} },
            "serverInfo": { "name": "resumable", "version": "1" },
        }),
        "tools/call" => {
            *r.pending.lock().unwrap() = Some(id);
            let (tx, rx) = mpsc::channel::<Bytes>(1);
            let r = r.clone();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from(primer("p1", RETRY_MS))).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                *r.closed_at.lock().unwrap() = Some(Instant::now());
                drop(tx);
            });
            return sse_response(rx);
        }
        _ if id.is_null() => return StatusCode::ACCEPTED.into_response(),
        _ => json!({}),
    };
    let mut resp =
        axum::Json(json!({ "jsonrpc": "2.0", "id": id, "result": result })).into_response();
    resp.headers_mut()
        .insert("mcp-session-id", "s1".parse().unwrap());
    resp
}

async fn resumable_get(State(r): State<Arc<Resumable>>, headers: HeaderMap) -> Response {
    let last = header(&headers, "last-event-id").map(str::to_owned);
    let n = {
        let mut gets = r.gets.lock().unwrap();
        gets.push((Instant::now(), last.clone()));
        gets.len()
    };
    // The client's own standing GET stream (no Last-Event-ID): not offered.
    if last.is_none() {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let mut events = vec![primer(&format!("g{n}"), 10)];
    let pending = r.pending.lock().unwrap().take();
    match pending {
        Some(id) if r.get_answers => {
            let answer = json!({ "jsonrpc": "2.0", "id": id,
                "result": { "content": [{ "type": "text", "text": "resumed" }] } });
            events.push(format!("id: g{n}-answer\n{}", data(&answer)));
            sse_body(events, Duration::ZERO, true)
        }
        other => {
            *r.pending.lock().unwrap() = other;
            sse_body(events, Duration::ZERO, false)
        }
    }
}

async fn resumable(get_answers: bool) -> (Arc<Resumable>, String) {
    let r = Arc::new(Resumable {
        get_answers,
        pending: Mutex::new(None),
        closed_at: Mutex::new(None),
        gets: Mutex::new(Vec::new()),
    });
    let router = Router::new()
        .route("/mcp", post(resumable_post).get(resumable_get))
        .with_state(r.clone());
    let url = format!("{}/mcp", serve(router).await);
    (r, url)
}

/// The POST stream closed after its priming event: the client waits the server's `retry`
/// (not less), then GETs with the priming event's id and reads the answer there.
#[tokio::test]
async fn a_post_stream_closed_early_is_resumed_after_retry_with_last_event_id() {
    let (r, url) = resumable(true).await;
    let (c, _t) = streamable(&url);
    handshake(&c).await;
    assert_eq!(echo(&c, "ignored").await.unwrap(), "resumed");
    let closed_at = r.closed_at.lock().unwrap().unwrap();
    let gets = r.gets.lock().unwrap().clone();
    let (at, last) = gets
        .iter()
        .find(|(_, last)| last.is_some())
        .expect("a resuming GET");
    assert_eq!(last.as_deref(), Some("p1"));
    let waited = at.duration_since(closed_at);
    assert!(
        waited >= Duration::from_millis(RETRY_MS - 20),
        "resumed after {waited:?}, before the server's retry of {RETRY_MS} ms"
    );
    assert_eq!(
        c.inbound.invalid_lines(),
        0,
        "priming events are not messages"
    );
}

/// A server that keeps closing the resumed stream without the answer: the client gives up
/// after 5 fruitless resumptions, each with the last id it saw, and the call fails.
#[tokio::test]
async fn resuming_gives_up_after_five_fruitless_attempts() {
    let (r, url) = resumable(false).await;
    let (c, _t) = streamable(&url);
    handshake(&c).await;
    let err = transport_error(echo(&c, "x").await);
    assert!(err.to_string().contains("gave up resuming"), "{err}");
    let gets = r.gets.lock().unwrap().clone();
    let resumed: Vec<Option<String>> = gets
        .into_iter()
        .map(|(_, l)| l)
        .filter(Option::is_some)
        .collect();
    assert_eq!(resumed.len(), 5, "{resumed:?}");
    assert_eq!(resumed[0].as_deref(), Some("p1"));
    assert_eq!(
        resumed[1].as_deref(),
        Some("g2"),
        "the id from the resumed stream"
    );
}

/// The server's GET stream ends after a `retry` of 150 ms: it is reopened after that, not
/// after the 1 s backoff used when a server sends none.
#[tokio::test]
async fn the_get_stream_is_reopened_after_the_servers_retry() {
    let gets: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = gets.clone();
    let router = Router::new().route(
        "/mcp",
        post(|body: Bytes| async move {
            let msg: Value = serde_json::from_slice(&body).unwrap();
            if msg["id"].is_null() {
                return StatusCode::ACCEPTED.into_response();
            }
            let result = json!({
                "protocolVersion": "2025-11-25", "capabilities": {},
                "serverInfo": { "name": "polling", "version": "1" },
            });
            axum::Json(json!({ "jsonrpc": "2.0", "id": msg["id"], "result": result }))
                .into_response()
        })
        .get(move || {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(Instant::now());
                sse_body(vec![primer("e", 150)], Duration::ZERO, false)
            }
        }),
    );
    let url = format!("{}/mcp", serve(router).await);
    let (c, _t) = streamable(&url);
    handshake(&c).await;
    eventually("three GETs", || gets.lock().unwrap().len() >= 3).await;
    let gets = gets.lock().unwrap().clone();
    for pair in gets.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= Duration::from_millis(140) && gap < Duration::from_millis(900),
            "reopened after {gap:?}"
        );
    }
}

// ==== Legacy SSE ====

/// A 2024-11-05 server whose stream carries event ids: the first stream (endpoint
/// `?s=1`) ends when `end_first` is cancelled; a reopened one names endpoint `?s=2`.
#[derive(Default)]
struct Reopenable {
    stream: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// `Last-Event-ID` of each GET.
    gets: Mutex<Vec<Option<String>>>,
    /// The query of each POST.
    posts: Mutex<Vec<String>>,
    end_first: tokio_util::sync::CancellationToken,
}

async fn reopenable_get(State(r): State<Arc<Reopenable>>, headers: HeaderMap) -> Response {
    let n = {
        let mut gets = r.gets.lock().unwrap();
        gets.push(header(&headers, "last-event-id").map(str::to_owned));
        gets.len()
    };
    let (tx, rx) = mpsc::channel(64);
    let hello = format!("id: L{n}\nretry: 100\nevent: endpoint\ndata: /messages?s={n}\n\n");
    tx.send(Bytes::from(hello)).await.unwrap();
    *r.stream.lock().unwrap() = Some(tx.clone());
    if n == 1 {
        let end = r.end_first.clone();
        let r = r.clone();
        tokio::spawn(async move {
            end.cancelled().await;
            r.stream.lock().unwrap().take();
            drop(tx);
        });
    }
    sse_response(rx)
}

async fn reopenable_post(
    State(r): State<Arc<Reopenable>>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    r.posts
        .lock()
        .unwrap()
        .push(uri.query().unwrap_or("").to_owned());
    let msg: Value = serde_json::from_slice(&body).unwrap();
    let result = match msg["method"].as_str().unwrap_or("") {
        "initialize" => Some(json!({ "protocolVersion": "2024-11-05", "capabilities": {},
            "serverInfo": { "name": "legacy", "version": "1" } })),
        "tools/call" => Some(
            json!({ "content": [{ "type": "text", "text": msg["params"]["arguments"]["text"] }] }),
        ),
        _ => None,
    };
    if let Some(result) = result {
        let answer = json!({ "jsonrpc": "2.0", "id": msg["id"], "result": result });
        let tx = r.stream.lock().unwrap().clone().unwrap();
        tx.send(Bytes::from(data(&answer))).await.unwrap();
    }
    (StatusCode::ACCEPTED, "Accepted").into_response()
}

/// The legacy event stream ends after carrying an event id: it is reopened with
/// `Last-Event-ID`, the new `endpoint` event moves the POSTs, and calls go on working.
#[tokio::test]
async fn a_legacy_sse_stream_with_event_ids_is_reopened_and_follows_its_new_endpoint() {
    let r = Arc::new(Reopenable::default());
    let router = Router::new()
        .route("/sse", get(reopenable_get))
        .route("/messages", post(reopenable_post))
        .with_state(r.clone());
    let base = serve(router).await;
    let (inbound, events) = Inbound::new("test", vec![]);
    let t = connect_legacy_sse(
        endpoint(&format!("{base}/sse")),
        reqwest::Client::new(),
        inbound.clone(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let c = conn(inbound, events, t.clone());
    handshake(&c).await;
    assert_eq!(echo(&c, "one").await.unwrap(), "one");
    r.end_first.cancel();
    eventually("the reopened stream", || t.post_url().ends_with("s=2")).await;
    assert_eq!(echo(&c, "two").await.unwrap(), "two");
    assert_eq!(
        *r.gets.lock().unwrap(),
        [None, Some("L1".to_owned())],
        "reopened once, after the last event id"
    );
    let posts = r.posts.lock().unwrap().clone();
    assert_eq!(posts.last().map(String::as_str), Some("s=2"), "{posts:?}");
    assert!(c.client.closed_reason().is_none());
}
