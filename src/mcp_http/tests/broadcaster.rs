//! The progress broadcaster (`root/progress`) killed while a client reads a session's event
//! stream over a real socket and a publisher publishes: the stream stays open, says
//! `event: reset` with how many events it missed, and goes on; the supervisor restarts the
//! broadcaster; the session stays usable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use revka_actors::session::{ProgressEvent, SessionEvent};
use serde_json::{Value, json};

use crate::http::testing::{serve, services};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// An SSE stream read frame by frame.
struct Frames {
    response: reqwest::Response,
    buffer: String,
}

impl Frames {
    /// The next frame (`event:` name or `None`, and its data), within 10 s.
    async fn next(&mut self) -> (Option<String>, String) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut name = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                return (name, data);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("a frame within 10 s")
                .expect("the stream reads")
                .expect("the stream is still open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

fn progress(i: u64) -> SessionEvent {
    SessionEvent::Progress(ProgressEvent {
        token: revka_mcp::jsonrpc::Id::from("t"),
        progress: json!(i),
        total: None,
        message: None,
        tool: None,
        timestamp: "2026-01-01T00:00:00Z".into(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_broadcaster_is_restarted_and_an_open_stream_gets_a_reset_then_later_events() {
    let (services, _home) = services(|_| {}).await;
    let (addr, stop) = serve(crate::mcp_http::listener(&services).unwrap()).await;
    let base = format!("http://{addr}");
    let session: Value = client()
        .post(format!("{base}/session"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, token) = (
        session["session_id"].as_str().unwrap(),
        session["token"].as_str().unwrap(),
    );
    let response = client()
        .get(format!("{base}/session/{id}/events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut frames = Frames {
        response,
        buffer: String::new(),
    };
    assert_eq!(frames.next().await, (None, String::new()), "`: connected`");

    // A publisher publishing all along.
    let live = services.sessions.get(id).expect("the session is alive");
    let published = Arc::new(AtomicU64::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (live, published, stopped) = (live.clone(), published.clone(), stopped.clone());
        async move {
            let mut i = 0;
            while !stopped.load(Ordering::Relaxed) {
                live.publish(progress(i));
                i += 1;
                published.store(i, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    // Every published event is received, or counted in a `lagged` or the `reset`.
    let (mut received, mut dropped, mut missed, mut resets) = (0u64, 0u64, 0u64, 0u64);
    let mut tally = |(name, data): (Option<String>, String)| -> Option<String> {
        let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
        match name.as_deref() {
            None if data.is_object() => received += 1,
            None => {} // a comment
            Some("lagged") => dropped += data["dropped"].as_u64().unwrap(),
            Some("reset") => {
                resets += 1;
                missed += data["missed"].as_u64().unwrap();
            }
            Some(_) => {}
        }
        name
    };

    // Mid-stream: the client is reading when the broadcaster is killed.
    let mut before = 0;
    while before < 20 {
        if tally(frames.next().await).is_none() {
            before += 1;
        }
    }
    let first = services.sessions.progress().actor().expect("running");
    first.kill();

    // The stream says so, then goes on with later events.
    while tally(frames.next().await).as_deref() != Some("reset") {}
    let mut after = 0;
    while after < 20 {
        if tally(frames.next().await).is_none() {
            after += 1;
        }
    }
    stopped.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    live.publish(SessionEvent::ToolsChanged);
    while tally(frames.next().await).as_deref() != Some("tools_changed") {}
    assert_eq!(resets, 1);
    assert_eq!(
        received + dropped + missed,
        published.load(Ordering::Relaxed),
        "received {received}, lagged {dropped}, missed {missed}"
    );

    // The supervisor restarted it, and the tree shows it.
    let node = services
        .status_root
        .find("root/progress")
        .expect("root/progress");
    assert_eq!(node.restarts(), 1);
    let second = services.sessions.progress().actor().expect("restarted");
    assert_ne!(second.get_id(), first.get_id());

    // The session is still usable: a request, and a second stream that gets new events.
    let ping = client()
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("x-revka-session", id)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    let response = client()
        .get(format!("{base}/session/{id}/events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut second_stream = Frames {
        response,
        buffer: String::new(),
    };
    assert_eq!(second_stream.next().await.0, None, "`: connected`");
    live.publish(SessionEvent::ToolsChanged);
    assert_eq!(
        second_stream.next().await.0.as_deref(),
        Some("tools_changed")
    );
    assert_eq!(frames.next().await.0.as_deref(), Some("tools_changed"));
    stop.cancel();
}
