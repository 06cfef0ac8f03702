//! `GET /mcp` in-process, on a real socket: `retry:` and a priming id first, each message with
//! its id, replay after `Last-Event-ID`, a gap notice for a garbage or too-old id, one stream
//! per session, both kinds of session, and the refusals.

use std::time::Duration;

use reqwest::StatusCode;
use revka_actors::session::{OUTBOUND_EVENTS, SessionEvent, SessionLimits, TOOLS_LIST_CHANGED};
use revka_mcp::sse::{SseEvent, SseParser};
use serde_json::Value;

use super::standard::{Standard, TOKEN_A, TOKEN_B};

/// An open `GET /mcp` stream, read event by event.
struct Stream {
    response: reqwest::Response,
    parser: SseParser,
    /// The raw text read so far (for `retry:`, which the parser keeps to itself).
    text: String,
}

impl Stream {
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(event) = self.parser.next_event() {
                return event.unwrap();
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream is open");
            self.text.push_str(&String::from_utf8_lossy(&chunk));
            self.parser.push(&chunk);
        }
    }

    /// The next event that carries data (the priming event carries none).
    async fn message(&mut self) -> (Option<String>, Value) {
        loop {
            let event = self.next().await;
            if !event.data.is_empty() {
                return (event.id, serde_json::from_str(&event.data).unwrap());
            }
        }
    }

    /// Whether the server ended the stream (within 10 s).
    async fn ended(&mut self) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.response.chunk()).await {
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Ok(Ok(Some(_))) => {}
                Err(_) => return false,
            }
        }
    }
}

impl Standard {
    /// `GET /mcp` of a standard session, with `Last-Event-ID` when given.
    async fn get(&self, session: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .get(&self.url)
            .bearer_auth(TOKEN_A)
            .header("mcp-session-id", session)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.unwrap()
    }

    async fn open(&self, session: &str, last_event_id: Option<&str>) -> Stream {
        let response = self.get(session, last_event_id).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Stream {
            response,
            parser: SseParser::new(1 << 20),
            text: String::new(),
        }
    }
}

fn note(n: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"info","data":{n}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_sends_retry_then_each_message_with_its_id_and_replays_after_last_event_id() {
    let s = Standard::start(true, SessionLimits::default()).await;
    let id = s.initialize(Some(TOKEN_A)).await;
    let session = s.sessions.get(&id).unwrap();
    let mut stream = s.open(&id, None).await;
    let priming = stream.next().await;
    assert!(
        stream.text.starts_with("retry: 1000\n"),
        "{:?}",
        stream.text
    );
    assert_eq!(
        (priming.id.as_deref(), priming.data.as_str()),
        (Some("0"), "")
    );
    assert_eq!(session.client_streams(), 1, "the session is in use");

    // A tool-list change reaches the stream as the notification, with the next id.
    session.publish(SessionEvent::ToolsChanged);
    let (event_id, message) = stream.message().await;
    assert_eq!(event_id.as_deref(), Some("1"));
    assert_eq!(
        message,
        serde_json::from_str::<Value>(TOOLS_LIST_CHANGED).unwrap()
    );
    session.send_to_client(note(2)).unwrap();
    session.send_to_client(note(3)).unwrap();
    assert_eq!(stream.message().await.0.as_deref(), Some("2"));
    assert_eq!(stream.message().await.0.as_deref(), Some("3"));
    drop(stream);

    // Reconnected after 1: 2 and 3 again, then live messages.
    let mut resumed = s.open(&id, Some("1")).await;
    let (event_id, message) = resumed.message().await;
    assert_eq!(
        (event_id.as_deref(), &message["params"]["data"]),
        (Some("2"), &Value::from(2))
    );
    assert_eq!(resumed.message().await.0.as_deref(), Some("3"));
    session.send_to_client(note(4)).unwrap();
    assert_eq!(resumed.message().await.0.as_deref(), Some("4"));
}

/// A `Last-Event-ID` that is not an id, or whose successors left the ring, gets a gap notice (a
/// `notifications/message` warning carrying the id to resume from), then what is held.
#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_or_too_old_last_event_id_gets_a_gap_notice() {
    let s = Standard::start(true, SessionLimits::default()).await;
    let id = s.initialize(Some(TOKEN_A)).await;
    let session = s.sessions.get(&id).unwrap();
    session.send_to_client(note(1)).unwrap();

    let mut garbage = s.open(&id, Some("not-an-id")).await;
    let (event_id, notice) = garbage.message().await;
    assert_eq!(
        event_id.as_deref(),
        Some("0"),
        "before the messages it precedes"
    );
    assert_eq!(notice["method"], "notifications/message");
    assert_eq!(notice["params"]["level"], "warning");
    assert_eq!(notice["params"]["logger"], "revka");
    assert_eq!(notice["params"]["data"]["lastEventId"], "not-an-id");
    assert_eq!(notice["params"]["data"]["missed"], Value::Null);
    assert!(
        notice["params"]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("is not an event of this session's stream"),
        "{notice}"
    );
    assert_eq!(
        garbage.message().await.0.as_deref(),
        Some("1"),
        "then what no stream took"
    );
    drop(garbage);

    // Push event 2 and its successors out of the ring.
    let total = OUTBOUND_EVENTS as u64 + 20;
    for n in 2..=total {
        session.send_to_client(note(n)).unwrap();
    }
    let oldest = total - OUTBOUND_EVENTS as u64 + 1;
    let mut old = s.open(&id, Some("1")).await;
    let (event_id, notice) = old.message().await;
    assert_eq!(event_id, Some((oldest - 1).to_string()));
    assert_eq!(notice["params"]["data"]["lastEventId"], "1");
    assert_eq!(notice["params"]["data"]["missed"], oldest - 2);
    let (event_id, _) = old.message().await;
    assert_eq!(event_id, Some(oldest.to_string()), "then the oldest held");
    // An id never issued is a gap too.
    drop(old);
    let mut future = s.open(&id, Some("999999")).await;
    assert_eq!(future.message().await.1["method"], "notifications/message");
}

/// A newer stream ends the older one, so no message goes to both; the two-header flow's
/// sessions have the same stream.
#[tokio::test(flavor = "multi_thread")]
async fn one_stream_per_session_and_two_header_sessions_have_one_too() {
    let s = Standard::start(true, SessionLimits::default()).await;
    let id = s.initialize(Some(TOKEN_A)).await;
    let session = s.sessions.get(&id).unwrap();
    let mut older = s.open(&id, None).await;
    older.next().await;
    let mut newer = s.open(&id, None).await;
    newer.next().await;
    assert!(older.ended().await, "the older stream ends");
    session.send_to_client(note(1)).unwrap();
    assert_eq!(newer.message().await.0.as_deref(), Some("1"));

    let (minted, token) = s
        .sessions
        .create(revka_actors::session::NewSession::new(
            std::path::Path::new("/").into(),
        ))
        .await
        .unwrap();
    let response = s
        .http
        .get(&s.url)
        .bearer_auth(&token)
        .header("x-revka-session", minted.id())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut two_header = Stream {
        response,
        parser: SseParser::new(1 << 20),
        text: String::new(),
    };
    minted.publish(SessionEvent::ToolsChanged);
    assert_eq!(
        two_header.message().await.1["method"],
        "notifications/tools/list_changed"
    );
    // The stream ends with the session.
    s.sessions.end(minted.id(), "test over");
    assert!(two_header.ended().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_mcp_refuses_without_a_session_a_token_or_an_event_stream_accept() {
    let s = Standard::start(true, SessionLimits::default()).await;
    let id = s.initialize(Some(TOKEN_A)).await;
    let get = || s.http.get(&s.url);
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(get().bearer_auth(TOKEN_A).send().await.unwrap()),
        StatusCode::BAD_REQUEST,
        "no session"
    );
    assert_eq!(
        status(get().header("mcp-session-id", &id).send().await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(
            get()
                .bearer_auth(TOKEN_B)
                .header("mcp-session-id", &id)
                .send()
                .await
                .unwrap()
        ),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(
            get()
                .bearer_auth(TOKEN_A)
                .header("mcp-session-id", &id)
                .header("accept", "application/json")
                .send()
                .await
                .unwrap()
        ),
        StatusCode::NOT_ACCEPTABLE
    );
    let session = s.sessions.get(&id).unwrap();
    assert_eq!(session.client_streams(), 0, "no stream was opened");
}
