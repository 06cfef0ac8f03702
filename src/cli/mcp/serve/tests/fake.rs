//! A fake daemon for the bridge's tests: the seed's two-header endpoints on a real loopback
//! socket, with misbehaving tools, a scripted server stream, and a log of what it was sent.
//! Part of the bridge's tests ([`super`]).
//!
//! `POST /session` mints `s1`/`t1`, `s2`/`t2`, ...; `POST /mcp` checks both headers (401
//! otherwise, or for every session once [`Fake::forget_sessions`] is called) and answers:
//! - `initialize`: `{protocolVersion}` (the one asked), as JSON;
//! - `tools/call` of `echo`: an SSE stream of one progress note (with the caller's token, if
//!   any), the response `{"echo": arguments}`, `event: done`;
//! - `tools/call` of `hang`: a stream that never ends (its drop is recorded: the client went);
//! - `tools/call` of `break`: one progress note, then the connection is cut mid-stream;
//! - `tools/call` of `abandon`: `event: done` with no response (as when a session ends);
//! - any other request: `{"method": <method>}` as JSON; notifications and responses: 202.
//!
//! It can also serve the same on a Unix socket named in `mcp.json` ([`Fake::start_with_socket`]),
//! counting the requests that come there.
//!
//! `GET /mcp` answers 405, or, with a script ([`Fake::stream`]), plays one body per
//! connection (the last one is replayed after the script runs out, and stays open).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use futures::StreamExt;
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) method: String,
    pub(super) path: String,
    /// `X-Revka-Session`, if sent.
    pub(super) session: Option<String>,
    /// `Last-Event-ID`, if sent.
    pub(super) last_event_id: Option<String>,
    pub(super) body: String,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    sessions: Mutex<HashSet<(String, String)>>,
    minted: AtomicU64,
    /// Streams of `hang` calls dropped (their client went away).
    dropped: AtomicU64,
    /// Bodies for successive `GET /mcp` connections; `None`: 405.
    script: Mutex<Option<Vec<String>>>,
    gets: AtomicU64,
    /// Requests that came on the Unix socket.
    on_socket: AtomicU64,
}

/// The fake daemon; stops when dropped.
pub(super) struct Fake {
    pub(super) addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    /// Serving the Unix socket, if any.
    socket: Option<(PathBuf, tokio::task::JoinHandle<()>)>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
        if let Some((_, task)) = &self.socket {
            task.abort();
        }
    }
}

impl Fake {
    /// Starts a fake daemon and writes its `mcp.json` into `home`.
    pub(super) async fn start(home: &Path) -> Self {
        let fake = Self::start_unlisted().await;
        fake.advertise(home);
        fake
    }

    /// Starts a fake daemon without writing `mcp.json`.
    pub(super) async fn start_unlisted() -> Self {
        let shared = Arc::new(Shared::default());
        let app = app(&shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            shared,
            task,
            socket: None,
        }
    }

    /// Starts a fake daemon that also serves `home/mcp.sock`, and writes its `mcp.json`
    /// naming both into `home`.
    pub(super) async fn start_with_socket(home: &Path) -> Self {
        let mut fake = Self::start_unlisted().await;
        let path = home.join(crate::http::unix::SOCKET_FILE);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let counted = fake.shared.clone();
        let app = app(&fake.shared).layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                counted.on_socket.fetch_add(1, Ordering::SeqCst);
                next.run(request)
            },
        ));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        fake.socket = Some((path, task));
        fake.advertise(home);
        fake
    }

    /// Writes `mcp.json` naming this fake (and its socket, if it has one) into `home`.
    pub(super) fn advertise(&self, home: &Path) {
        let socket = self.socket.as_ref().map(|(path, _)| path.as_path());
        let url = format!("http://{}/mcp", self.addr);
        crate::http::discovery::write_mcp_discovery(home, &url, socket).unwrap();
    }

    /// How many requests came on the Unix socket.
    pub(super) fn on_socket(&self) -> u64 {
        self.shared.on_socket.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub(super) fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The bodies of the `POST /mcp` requests received so far.
    pub(super) fn posted(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path == "/mcp")
            .map(|s| s.body)
            .collect()
    }

    /// How many `hang` streams were dropped by their client.
    pub(super) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::SeqCst)
    }

    /// How many `GET /mcp` were made.
    pub(super) fn gets(&self) -> u64 {
        self.shared.gets.load(Ordering::SeqCst)
    }

    /// Makes every session unknown (401), as a restarted daemon would.
    pub(super) fn forget_sessions(&self) {
        self.shared.sessions.lock().unwrap().clear();
    }

    /// Serves `GET /mcp` with these bodies, one per connection.
    pub(super) fn stream(&self, bodies: &[&str]) {
        *self.shared.script.lock().unwrap() =
            Some(bodies.iter().map(|b| (*b).to_owned()).collect());
    }
}

fn app(shared: &Arc<Shared>) -> Router {
    Router::new()
        .route("/session", post(create_session))
        .route("/session/{id}", delete(delete_session))
        .route("/mcp", post(mcp_post).get(mcp_get))
        .with_state(shared.clone())
}

fn record(shared: &Shared, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    shared.seen.lock().unwrap().push(Seen {
        method: method.to_owned(),
        path: path.to_owned(),
        session: header("x-revka-session"),
        last_event_id: header("last-event-id"),
        body: String::from_utf8_lossy(body).into_owned(),
    });
}

async fn create_session(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&shared, "POST", "/session", &headers, &body);
    let n = shared.minted.fetch_add(1, Ordering::SeqCst) + 1;
    let (id, token) = (format!("s{n}"), format!("t{n}"));
    shared
        .sessions
        .lock()
        .unwrap()
        .insert((id.clone(), token.clone()));
    axum::Json(json!({ "session_id": id, "token": token, "cwd": "/" })).into_response()
}

async fn delete_session(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> StatusCode {
    record(&shared, "DELETE", &format!("/session/{id}"), &headers, b"");
    StatusCode::NO_CONTENT
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let id = headers.get("x-revka-session").and_then(|v| v.to_str().ok());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (id, token) {
        (Some(id), Some(token)) => shared
            .sessions
            .lock()
            .unwrap()
            .contains(&(id.to_owned(), token.to_owned())),
        _ => false,
    }
}

/// Records its drop: the call's client hung up.
struct DropFlag(Arc<Shared>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn sse(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

async fn mcp_post(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    record(&shared, "POST", "/mcp", &headers, &body);
    if !authorized(&shared, &headers) {
        let answer =
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"unauthorized"}}"#;
        return (StatusCode::UNAUTHORIZED, answer).into_response();
    }
    let message: Value = serde_json::from_slice(&body).unwrap();
    let Some(method) = message["method"].as_str() else {
        return StatusCode::ACCEPTED.into_response();
    };
    // The id exactly as sent: cut from the body, never through a `Value`.
    let Some(id) = raw_id(&body) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let answer = |result: Value| format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
    match method {
        "initialize" => {
            let version = message["params"]["protocolVersion"].clone();
            let result = json!({ "protocolVersion": version, "capabilities": {}, "serverInfo": { "name": "fake", "version": "0" } });
            ([(header::CONTENT_TYPE, "application/json")], answer(result)).into_response()
        }
        "tools/call" => {
            let token = message["params"]["_meta"]["progressToken"].clone();
            let note = json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": { "progressToken": token, "progress": 1 } });
            let progress = format!("data: {note}\n\n");
            match message["params"]["name"].as_str().unwrap_or_default() {
                "hang" => {
                    let flag = DropFlag(shared.clone());
                    let stream =
                        futures::stream::once(
                            async move { Ok::<_, Infallible>(Bytes::from(progress)) },
                        )
                        .chain(futures::stream::pending())
                        .map(move |chunk| {
                            let _ = &flag;
                            chunk
                        });
                    sse(Body::from_stream(stream))
                }
                "break" => {
                    let stream = futures::stream::iter([
                        Ok(Bytes::from(progress)),
                        Err(std::io::Error::other("cut")),
                    ]);
                    sse(Body::from_stream(stream))
                }
                "abandon" => sse(Body::from("event: done\ndata: {}\n\n")),
                _ => {
                    let result = json!({ "echo": message["params"]["arguments"] });
                    let frames = format!(
                        "{progress}data: {}\n\nevent: done\ndata: {{}}\n\n",
                        answer(result)
                    );
                    sse(Body::from(frames))
                }
            }
        }
        other => {
            let result = json!({ "method": other });
            ([(header::CONTENT_TYPE, "application/json")], answer(result)).into_response()
        }
    }
}

/// The `"id"` member's text, as the client wrote it.
fn raw_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
    }
    let raw: Raw<'_> = serde_json::from_slice(body).ok()?;
    raw.id.map(|id| id.get().to_owned())
}

async fn mcp_get(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    record(&shared, "GET", "/mcp", &headers, b"");
    let n = shared.gets.fetch_add(1, Ordering::SeqCst) as usize;
    let script = shared.script.lock().unwrap().clone();
    let Some(bodies) = script else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    if !authorized(&shared, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let last = n + 1 >= bodies.len();
    let body = bodies[n.min(bodies.len() - 1)].clone();
    if last {
        // The last body stays open, as a live stream does.
        let stream = futures::stream::once(async move { Ok::<_, Infallible>(Bytes::from(body)) })
            .chain(futures::stream::pending());
        sse(Body::from_stream(stream))
    } else {
        sse(Body::from(body))
    }
}
