//! Ids and progress tokens come back exactly as the client wrote them, on every path of
//! `POST /mcp`, and calls whose ids differ only past double precision are distinct calls.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{serve, serve_with};
use crate::tools::{BuiltinError, BuiltinTool, ToolContext};

/// Sixty digits: no double holds this integer.
const SIXTY_DIGITS: &str = "123456789012345678901234567890123456789012345678901234567890";

/// Posts a JSON-RPC body to `/mcp` with the session's headers.
async fn post(url: &str, session: &str, token: &str, body: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("X-Revka-Session", session)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_carries_the_request_id_byte_for_byte() {
    let (url, session, token) = serve(Duration::from_secs(15)).await;
    for id in [
        SIXTY_DIGITS,
        "1e400",
        "1.0",
        "1E+2",
        "-0",
        r#""r\u0041\/7""#,
        "7",
    ] {
        for (method, params) in [
            ("initialize", r#"{"protocolVersion":"2025-06-18"}"#),
            ("ping", "{}"),
            ("tools/list", "{}"),
            ("no/such/method", "{}"),
            ("tools/call", r#"{"name":"panics"}"#),
            ("tools/call", r#"{"name":"no_such_tool"}"#),
            ("tools/call", "[]"),
        ] {
            let body =
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
            let text = post(&url, &session, &token, body)
                .await
                .text()
                .await
                .unwrap();
            assert!(
                text.contains(&format!(r#""id":{id},"#)),
                "{method} {params} with id {id}: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_tokens_come_back_byte_for_byte_on_the_call_and_the_event_stream() {
    let (url, session, token) = serve(Duration::from_secs(15)).await;
    let events_url = url.replace("/mcp", &format!("/session/{session}/events"));
    let mut events = reqwest::Client::new()
        .get(events_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    for progress_token in [SIXTY_DIGITS, "0.5", r#""p\u0041""#] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"slow","_meta":{{"progressToken":{progress_token}}}}}}}"#
        );
        let text = post(&url, &session, &token, body)
            .await
            .text()
            .await
            .unwrap();
        assert!(
            text.contains(&format!(r#""progressToken":{progress_token},"#)),
            "{progress_token}: {text}"
        );
        let expected = format!(r#""token":{progress_token},"#);
        let mut seen = String::new();
        while !seen.contains(&expected) {
            let chunk = tokio::time::timeout(Duration::from_secs(20), events.chunk())
                .await
                .expect("the event stream carries the progress")
                .unwrap()
                .expect("the event stream is open");
            seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// Reports progress once, then waits until the test releases it.
struct Waits(CancellationToken);

impl BuiltinTool for Waits {
    fn definition(&self) -> Value {
        json!({ "name": "waits", "description": "waits to be released", "inputSchema": { "type": "object" } })
    }
    fn call(&self, ctx: ToolContext, _: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let release = self.0.clone();
        Box::pin(async move {
            (ctx.progress)(revka_mcp::protocol::ProgressUpdate {
                progress: json!(0),
                total: None,
                message: None,
            });
            release.cancelled().await;
            Ok(json!({ "content": [{ "type": "text", "text": "released" }], "isError": false }))
        })
    }
}

/// Reads a call's stream until it holds `needle`; the text so far.
async fn read_until(response: &mut reqwest::Response, needle: &str, text: &mut String) {
    while !text.contains(needle) {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .unwrap_or_else(|_| panic!("waiting for {needle}: {text}"))
            .unwrap();
        let Some(chunk) = chunk else {
            panic!("stream ended before {needle}: {text}")
        };
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

/// Two calls in flight whose ids are the same double (they differ in the sixtieth digit) are
/// two calls: neither is refused as a duplicate, and `notifications/cancelled` for one cancels
/// that one only.
#[tokio::test(flavor = "multi_thread")]
async fn ids_that_differ_past_double_precision_are_distinct_calls() {
    let release = CancellationToken::new();
    let tools: Vec<Arc<dyn BuiltinTool>> = vec![Arc::new(Waits(release.clone()))];
    let (url, session, token) = serve_with(Duration::from_secs(15), tools).await;
    let first = format!("{}0", &SIXTY_DIGITS[..59]);
    let second = format!("{}1", &SIXTY_DIGITS[..59]);
    let mut streams = Vec::new();
    for id in [&first, &second] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"waits"}}}}"#
        );
        let mut response = post(&url, &session, &token, body).await;
        let mut text = String::new();
        read_until(&mut response, "notifications/progress", &mut text).await;
        streams.push((response, text));
    }
    let cancel = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{second}}}}}"#
    );
    let status = post(&url, &session, &token, cancel).await.status();
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    let (mut cancelled, mut text) = streams.pop().unwrap();
    read_until(&mut cancelled, "event: done", &mut text).await;
    assert!(!text.contains("released"), "cancelled, no result: {text}");

    release.cancel();
    let (mut running, mut text) = streams.pop().unwrap();
    read_until(&mut running, "event: done", &mut text).await;
    assert!(
        text.contains(&format!(r#""id":{first},"result""#)) && text.contains("released"),
        "the other call ran to its result: {text}"
    );
}
