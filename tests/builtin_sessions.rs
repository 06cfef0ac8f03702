//! The `sessions_*` tools end to end, through the official Python SDK client: `sessions_list`
//! sees two labelled sessions, `sessions_history` shows a session's earlier calls from the run
//! log, `sessions_send` reaches the other session's event stream as a logging notification;
//! bad ids and oversized messages are refused precisely, and a session opened with a client
//! token sees only the sessions of that token.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{EventStream, Served, sdk_tool_calls};

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_listed_their_history_read_and_messages_delivered() {
    let served = Served::start("").await;
    let alpha = served.session_with(Some("alpha")).await;
    let beta = served.session_with(Some("beta")).await;
    // Alpha makes two calls first.
    let activated = alpha
        .call_text("tool_search", json!({ "query": "select:fault__echo" }))
        .await;
    assert!(activated.contains("fault__echo"), "{activated}");
    for n in 0..2 {
        let text = alpha
            .call_text("fault__echo", json!({ "text": format!("call {n}") }))
            .await;
        assert!(text.contains("call"), "{text}");
    }
    let mut events = EventStream::open(&served, &alpha).await;
    let Some(out) = sdk_tool_calls(
        &served,
        &beta,
        json!([
            { "tool": "sessions_list", "arguments": {} },
            { "tool": "sessions_history", "arguments": { "session_id": alpha.id, "limit": 10 } },
            { "tool": "sessions_send", "arguments": { "session_id": alpha.id, "message": "hello from beta" } },
            { "tool": "sessions_send", "arguments": { "session_id": "0123456789abcdef0123456789abcdef", "message": "x" } },
            { "tool": "sessions_send", "arguments": { "session_id": "not-an-id", "message": "x" } },
            { "tool": "sessions_send", "arguments": { "session_id": alpha.id, "message": "x".repeat(9000) } },
            { "tool": "sessions_history", "arguments": {} },
        ]),
    )
    .await
    else {
        return;
    };
    let calls = out["calls"].as_array().unwrap();
    // The list: both sessions, with labels; beta is "you".
    let list = calls[0]["structured"]["sessions"].as_array().unwrap();
    let find = |id: &str| {
        list.iter()
            .find(|s| s["session_id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(find(&alpha.id)["label"], "alpha", "{list:?}");
    assert_eq!(find(&beta.id)["label"], "beta", "{list:?}");
    assert_eq!(find(&beta.id)["you"], true);
    assert_eq!(find(&alpha.id)["you"], false);
    // Alpha's history: its two echo calls (and its tool_search), newest first.
    assert_eq!(calls[1]["is_error"], false, "{}", calls[1]);
    let history = calls[1]["structured"]["calls"].as_array().unwrap();
    let echoes: Vec<&Value> = history
        .iter()
        .filter(|c| c["tool"] == "fault__echo")
        .collect();
    assert_eq!(echoes.len(), 2, "{history:?}");
    assert!(
        echoes
            .iter()
            .all(|c| c["outcome"] == "ok" && c["server"] == "fault")
    );
    // Delivered to alpha's event stream as a logging notification.
    assert_eq!(calls[2]["is_error"], false, "{}", calls[2]);
    assert_eq!(calls[2]["structured"]["delivered"], true);
    let delivered = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let event = events.next().await;
            if event.data.contains("revka.sessions") {
                return event;
            }
        }
    })
    .await
    .expect("the message reaches alpha's event stream");
    let message: Value = serde_json::from_str(&delivered.data).unwrap();
    assert_eq!(message["method"], "notifications/message");
    assert_eq!(message["params"]["level"], "notice");
    assert_eq!(message["params"]["logger"], "revka.sessions");
    assert_eq!(message["params"]["data"]["from"], beta.id.as_str());
    assert_eq!(message["params"]["data"]["from_label"], "beta");
    assert_eq!(message["params"]["data"]["message"], "hello from beta");
    // Precise refusals.
    assert_eq!(calls[3]["is_error"], true);
    assert!(
        calls[3]["text"]
            .as_str()
            .unwrap()
            .contains("no live session"),
        "{}",
        calls[3]
    );
    assert!(
        calls[4]["text"].as_str().unwrap().contains("32 hex digits"),
        "{}",
        calls[4]
    );
    assert!(
        calls[5]["text"].as_str().unwrap().contains("at most 8192"),
        "{}",
        calls[5]
    );
    // Beta's own history holds the SDK client's calls of this very run.
    let own = calls[6]["structured"]["calls"].as_array().unwrap();
    assert!(own.iter().any(|c| c["tool"] == "sessions_list"), "{own:?}");
}

/// A session opened with a client token (the standard Streamable HTTP path) lists only the
/// sessions of that token: not the two minted by `POST /session`.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_token_session_sees_only_its_own_sessions() {
    let served = Served::start("").await;
    let other = served.session_with(Some("owner's")).await;
    let token = served.client_token();
    let std = crate::mcp_standard::StdSession::open(&served.url, Some(&token)).await;
    let sid = std.id.clone();
    let call = |id: u64, name: &str, args: Value| {
        std.send(json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
                         "params": { "name": name, "arguments": args } }))
    };
    call(
        2,
        "tool_search",
        json!({ "query": "select:sessions_list,sessions_send" }),
    )
    .await
    .text()
    .await
    .unwrap();
    let listed = call(3, "sessions_list", json!({}))
        .await
        .text()
        .await
        .unwrap();
    assert!(listed.contains(&sid), "{listed}");
    assert!(
        !listed.contains(&other.id),
        "the owner's session is not shown: {listed}"
    );
    let sent = call(
        4,
        "sessions_send",
        json!({ "session_id": other.id, "message": "hi" }),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(sent.contains("no live session"), "{sent}");
}
