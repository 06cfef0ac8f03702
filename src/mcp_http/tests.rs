//! The MCP server in-process, with built-in test tools: a panicking tool gives an error result
//! and the server stays up; built-in progress reaches the stream; the keep-alive comment.

mod broadcaster;
mod listener;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::Actor;
use revka_actors::StatusNode;
use revka_actors::mcp::hub::McpHub;
use revka_actors::session::{SessionLimits, Sessions};
use revka_actors::supervisor::{Intensity, Strategy, SupervisorActor, SupervisorArguments};
use revka_mcp::protocol::ProgressUpdate;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::McpServer;
use crate::tools::{BuiltinError, BuiltinTool, ToolContext, ToolRegistry};

mod ids;
mod standard;
mod stream;

struct Panics;

impl BuiltinTool for Panics {
    fn definition(&self) -> Value {
        json!({ "name": "panics", "description": "always panics", "inputSchema": { "type": "object" } })
    }
    fn call(&self, _: ToolContext, _: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        Box::pin(async { panic!("boom on purpose") })
    }
}

struct Slow;

impl BuiltinTool for Slow {
    fn definition(&self) -> Value {
        json!({ "name": "slow", "description": "reports progress, then sleeps", "inputSchema": { "type": "object" } })
    }
    fn call(&self, ctx: ToolContext, _: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        Box::pin(async move {
            (ctx.progress)(ProgressUpdate {
                progress: json!(1),
                total: Some(json!(2)),
                message: Some("half".into()),
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(json!({ "content": [{ "type": "text", "text": "slept" }], "isError": false }))
        })
    }
}

/// A session table under a running `sessions` supervisor.
async fn sessions() -> Arc<Sessions> {
    sessions_with(SessionLimits::default()).await
}

/// A session table with `limits` under a running `sessions` supervisor.
async fn sessions_with(limits: SessionLimits) -> Arc<Sessions> {
    let node = StatusNode::root("sessions", "supervisor");
    let args = SupervisorArguments {
        node,
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: Vec::new(),
    };
    let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    let sessions = Sessions::new(limits);
    sessions.attach_supervisor(sup);
    start_progress(&sessions).await;
    sessions
}

/// Starts the progress broadcaster of `sessions` (unsupervised).
async fn start_progress(sessions: &Sessions) {
    use revka_actors::progress::{ProgressActor, ProgressArguments};
    let args = ProgressArguments {
        progress: sessions.progress().clone(),
        node: StatusNode::root("progress", "broadcaster"),
    };
    ProgressActor::spawn(None, ProgressActor, args)
        .await
        .expect("progress broadcaster");
}

async fn serve(keepalive: Duration) -> (String, String, String) {
    serve_with(keepalive, Vec::new()).await
}

/// A server with the test tools and `extra`: its `/mcp` URL, and a session's id and token.
async fn serve_with(
    keepalive: Duration,
    extra: Vec<Arc<dyn BuiltinTool>>,
) -> (String, String, String) {
    let sessions = sessions().await;
    let mut registry = ToolRegistry::new(McpHub::new(), true);
    registry.register(Arc::new(Panics));
    registry.register(Arc::new(Slow));
    for tool in extra {
        registry.register(tool);
    }
    let telemetry =
        crate::telemetry::Telemetry::new(&StatusNode::root("root", "supervisor"), &sessions)
            .unwrap();
    let mut server = McpServer::new(
        sessions.clone(),
        Arc::new(registry),
        telemetry,
        CancellationToken::new(),
    );
    Arc::get_mut(&mut server.inner).unwrap().keepalive = keepalive;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service(
                server.service(crate::http::loopback::Hosts::Loopback),
            ),
        )
        .await
    });
    let (session, token) = sessions
        .create(revka_actors::session::NewSession::new(
            std::path::Path::new("/").into(),
        ))
        .await
        .unwrap();
    (format!("http://{addr}/mcp"), session.id().to_owned(), token)
}

async fn call(url: &str, id: &str, token: &str, tool: &str) -> String {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("X-Revka-Session", id)
        .header("content-type", "application/json")
        .body(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": tool, "_meta": { "progressToken": 3 } } }).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_tool_is_an_error_result_and_the_server_stays_up() {
    let (url, id, token) = serve(Duration::from_secs(15)).await;
    let text = call(&url, &id, &token, "panics").await;
    assert!(
        text.contains(r#""isError":true"#) && text.contains("failed internally: boom on purpose"),
        "{text}"
    );
    assert!(text.ends_with("event: done\ndata: {}\n\n"));
    let again = call(&url, &id, &token, "panics").await;
    assert!(again.contains("boom on purpose"), "still serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn builtin_progress_and_keepalive_reach_the_stream() {
    let (url, id, token) = serve(Duration::from_millis(100)).await;
    let text = call(&url, &id, &token, "slow").await;
    let progress = text
        .find(r#""method":"notifications/progress""#)
        .expect("progress");
    let keepalive = text
        .find(": keep-alive")
        .expect("a keep-alive comment during the sleep");
    let result = text.find(r#""text":"slept""#).expect("result");
    assert!(progress < keepalive && keepalive < result, "{text}");
    assert!(text.contains(r#""progressToken":3"#));
}

/// A session of a fresh table, and a subscriber to its event stream (keep-alive: an hour).
async fn subscribed() -> (
    Arc<Sessions>,
    Arc<revka_actors::session::Session>,
    super::events::Subscriber,
) {
    let sessions = sessions().await;
    let (session, _) = sessions
        .create(revka_actors::session::NewSession::new(
            std::path::Path::new("/").into(),
        ))
        .await
        .unwrap();
    let subscriber = super::events::Subscriber::new(
        session.subscribe().await.unwrap(),
        CancellationToken::new(),
        Duration::from_secs(3600),
    );
    (sessions, session, subscriber)
}

/// Publishes `n` progress events of 8 KiB each on `session`'s stream.
fn publish_big(session: &revka_actors::session::Session, n: usize) {
    use revka_actors::session::{ProgressEvent, SessionEvent};
    let big = ProgressEvent {
        token: revka_mcp::jsonrpc::Id::from(1u64),
        progress: json!(1),
        total: None,
        message: Some("x".repeat(8 * 1024)),
        tool: None,
        timestamp: "2026-12-06T00:00:00Z".into(),
    };
    for _ in 0..n {
        session.publish(SessionEvent::Progress(big.clone()));
    }
}

/// A subscriber's stream sends the events waiting when it is polled in one chunk (at most
/// `MAX_CHUNK` and one event), says how many it lost when it fell behind, and ends with the
/// session.
#[tokio::test]
async fn an_event_stream_sends_what_is_waiting_in_one_chunk_and_tells_what_it_lost() {
    use revka_actors::session::SessionEvent;

    use super::events::MAX_CHUNK;

    let (sessions, session, mut subscriber) = subscribed().await;
    let frames = |chunk: &[u8], frame: &str| String::from_utf8_lossy(chunk).matches(frame).count();

    for _ in 0..3 {
        session.publish(SessionEvent::ToolsChanged);
    }
    let chunk = subscriber.next_chunk().await.unwrap();
    assert_eq!(
        frames(&chunk, "event: tools_changed\n"),
        3,
        "one chunk holds all three"
    );

    // 300 events before the next poll: more than the broadcast channel holds.
    for _ in 0..300 {
        session.publish(SessionEvent::ToolsChanged);
    }
    let chunk = subscriber.next_chunk().await.unwrap();
    let text = String::from_utf8_lossy(&chunk);
    let lagged = text
        .strip_prefix("event: lagged\ndata: ")
        .and_then(|rest| rest.split_once('\n'))
        .map(|(data, _)| serde_json::from_str::<Value>(data).unwrap())
        .unwrap_or_else(|| panic!("the chunk starts with the lagged notice: {text:.200}"));
    let dropped = lagged["dropped"].as_u64().unwrap() as usize;
    let received = frames(&chunk, "event: tools_changed\n");
    assert!(dropped > 0, "{lagged}");
    assert_eq!(
        dropped + received,
        300,
        "each event is either received or counted as lost"
    );

    // Big events: a chunk stops growing once it reaches the cap.
    publish_big(&session, 20);
    let chunk = subscriber.next_chunk().await.unwrap();
    let one = chunk.len() / frames(&chunk, "data: ");
    assert!(
        chunk.len() >= MAX_CHUNK && chunk.len() < MAX_CHUNK + one,
        "{} bytes in the chunk",
        chunk.len()
    );
    let mut rest = frames(&chunk, "data: ");
    while rest < 20 {
        rest += frames(&subscriber.next_chunk().await.unwrap(), "data: ");
    }
    assert_eq!(rest, 20, "no event is lost by the cap");

    sessions.end(session.id(), "test over");
    assert!(
        subscriber.next_chunk().await.is_none(),
        "the stream ends with the session"
    );
}

/// An event stream writes an event at once after a quiet spell, holds the events that follow
/// a write for half to one and a half `PACE` and sends them together, skips the hold when
/// events come too fast for one (a burst, or a chunk stopped at `MAX_CHUNK`), and still sends
/// what was published before the session ended.
#[tokio::test(start_paused = true)]
async fn an_event_stream_holds_events_that_follow_a_write_and_no_others() {
    use revka_actors::session::SessionEvent;
    use tokio::time::Instant;

    use super::events::{MAX_CHUNK, PACE};

    let (sessions, session, mut subscriber) = subscribed().await;
    let publish = |n: usize| (0..n).for_each(|_| session.publish(SessionEvent::ToolsChanged));
    // Events in a chunk (each is one `data:` line), and how long the chunk took to come.
    let mut next = async || {
        let start = Instant::now();
        let chunk = subscriber.next_chunk().await.expect("the stream is open");
        let events = String::from_utf8_lossy(&chunk).matches("data: ").count();
        (events, chunk.len(), start.elapsed())
    };

    publish(1);
    let (events, _, waited) = next().await;
    assert_eq!(
        (events, waited),
        (1, Duration::ZERO),
        "the first event goes at once"
    );

    publish(2);
    let (events, _, waited) = next().await;
    assert_eq!(events, 2, "the two events that followed go together");
    assert!(
        waited >= PACE / 2 && waited <= PACE * 3 / 2,
        "held for {waited:?}"
    );

    tokio::time::sleep(PACE * 2).await;
    publish(1);
    let (events, _, waited) = next().await;
    assert_eq!(
        (events, waited),
        (1, Duration::ZERO),
        "an event after a quiet spell goes at once"
    );

    // A burst of 100: sent after the hold, and since that many would overrun the channel
    // during another hold, the next event is not held.
    tokio::time::sleep(PACE / 4).await;
    publish(100);
    let (events, _, waited) = next().await;
    assert_eq!(events, 100);
    assert!(waited > Duration::ZERO, "held");
    publish(1);
    let (events, _, waited) = next().await;
    assert_eq!(
        (events, waited),
        (1, Duration::ZERO),
        "no hold after a chunk of a burst"
    );

    // Twenty 8 KiB events after a quiet spell: too few for a burst, but more than one chunk
    // takes. The chunk that stops at the cap is not followed by a hold.
    tokio::time::sleep(PACE * 2).await;
    publish_big(&session, 20);
    let (first, bytes, waited) = next().await;
    assert!(
        bytes >= MAX_CHUNK && first < 20,
        "{first} events, {bytes} bytes"
    );
    assert_eq!(waited, Duration::ZERO);
    let mut received = first;
    while received < 20 {
        let (events, _, waited) = next().await;
        assert_eq!(
            waited,
            Duration::ZERO,
            "each chunk after a full one goes at once"
        );
        received += events;
    }
    assert_eq!(received, 20);

    // The end cuts a hold short, and what is waiting still goes out.
    publish(3);
    sessions.end(session.id(), "test over");
    assert_eq!(next().await.0, 3, "published before the end, sent");
    assert!(
        subscriber.next_chunk().await.is_none(),
        "then the stream ends"
    );
}
