//! The client core against an in-memory transport, where the test plays the server.

use std::sync::Mutex;

use serde_json::json;
use tokio::sync::mpsc;

use super::*;
use crate::testing::Wire;

struct Harness {
    client: Arc<McpClient>,
    inbound: Inbound,
    sent: mpsc::UnboundedReceiver<Value>,
    events: mpsc::UnboundedReceiver<ClientEvent>,
}

fn harness() -> Harness {
    let (inbound, events) = Inbound::new(
        "fake",
        vec![Root {
            uri: "file:///work".into(),
            name: Some("work".into()),
        }],
    );
    let (tx, sent) = mpsc::unbounded_channel();
    let client = Arc::new(McpClient::new(inbound.clone(), Arc::new(Wire { sent: tx })));
    Harness {
        client,
        inbound,
        sent,
        events,
    }
}

fn opts(timeout_ms: u64) -> CallOptions {
    CallOptions {
        timeout: Duration::from_millis(timeout_ms),
        ..Default::default()
    }
}

fn reply(inbound: &Inbound, v: Value) -> Option<Outgoing> {
    inbound.dispatch_line(v.to_string().as_bytes())
}

#[tokio::test]
async fn concurrent_calls_are_matched_by_id_whatever_the_answer_order() {
    let mut h = harness();
    let mut calls = Vec::new();
    for i in 0..100 {
        let c = h.client.clone();
        calls.push(tokio::spawn(async move {
            c.call_tool("echo", json!({ "i": i }), &opts(5000)).await
        }));
    }
    let mut requests = Vec::new();
    for _ in 0..100 {
        requests.push(h.sent.recv().await.unwrap());
    }
    // Answer in reverse order, each with its own argument.
    for req in requests.iter().rev() {
        let i = &req["params"]["arguments"]["i"];
        reply(
            &h.inbound,
            json!({"jsonrpc": "2.0", "id": req["id"], "result": {"i": i}}),
        );
    }
    for (i, call) in calls.into_iter().enumerate() {
        let result = call.await.unwrap().unwrap();
        let v: Value = serde_json::from_str(result.get()).unwrap();
        assert_eq!(v["i"], i, "call {i} got its own answer");
    }
    assert_eq!(h.client.pending_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_cancels_upstream_and_forgets_the_call() {
    let mut h = harness();
    let err = h
        .client
        .call_tool("hang", json!({}), &opts(1000))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("did not answer tools/call"));
    let req = h.sent.recv().await.unwrap();
    let cancel = h.sent.recv().await.unwrap();
    assert_eq!(cancel["method"], "notifications/cancelled");
    assert_eq!(cancel["params"]["requestId"], req["id"]);
    assert_eq!(cancel["params"]["reason"], "timeout");
    assert_eq!(h.client.pending_calls(), 0);
    // A late answer is ignored, not misdelivered.
    reply(
        &h.inbound,
        json!({"jsonrpc": "2.0", "id": req["id"], "result": {}}),
    );
}

#[tokio::test]
async fn dropping_a_call_cancels_it_upstream() {
    let mut h = harness();
    let c = h.client.clone();
    let call = tokio::spawn(async move { c.call_tool("hang", json!({}), &opts(60_000)).await });
    let req = h.sent.recv().await.unwrap();
    call.abort();
    let cancel = h.sent.recv().await.unwrap();
    assert_eq!(cancel["method"], "notifications/cancelled");
    assert_eq!(cancel["params"]["requestId"], req["id"]);
    assert_eq!(h.client.pending_calls(), 0);
}

#[tokio::test]
async fn closing_fails_every_pending_call_at_once_and_later_calls_fast() {
    let mut h = harness();
    let mut calls = Vec::new();
    for _ in 0..10 {
        let c = h.client.clone();
        calls.push(tokio::spawn(async move {
            c.call_tool("hang", json!({}), &opts(60_000)).await
        }));
    }
    for _ in 0..10 {
        h.sent.recv().await.unwrap();
    }
    h.inbound.close("process exited with status 1");
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "server `fake` failed: process exited with status 1"
        );
    }
    let err = h
        .client
        .call_tool("x", json!({}), &opts(60_000))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Closed { .. }));
    assert_eq!(
        h.events.recv().await,
        Some(ClientEvent::Closed("process exited with status 1".into()))
    );
}

#[tokio::test]
async fn progress_goes_to_the_callers_sink_and_rpc_errors_come_back() {
    let mut h = harness();
    let seen: Arc<Mutex<Vec<ProgressUpdate>>> = Arc::default();
    let sink_seen = seen.clone();
    let o = CallOptions {
        timeout: Duration::from_secs(5),
        progress: Some(Arc::new(move |p| sink_seen.lock().unwrap().push(p))),
        ..Default::default()
    };
    let c = h.client.clone();
    let call = tokio::spawn(async move { c.call_tool("progress", json!({}), &o).await });
    let req = h.sent.recv().await.unwrap();
    let token = req["params"]["_meta"]["progressToken"].clone();
    assert_eq!(token, req["id"], "our id is the upstream token");
    for i in 1..=3 {
        reply(
            &h.inbound,
            json!({"jsonrpc": "2.0", "method": "notifications/progress",
            "params": {"progressToken": token, "progress": i, "total": 3, "message": format!("step {i}")}}),
        );
    }
    // Progress for an unknown token is ignored.
    reply(
        &h.inbound,
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 999, "progress": 1}}),
    );
    reply(
        &h.inbound,
        json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32602, "message": "unknown tool: progress"}}),
    );
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, CallError::Rpc { error, .. } if error.code == -32602),
        "{err}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].message.as_deref(), Some("step 3"));
    assert_eq!(seen[2].total, Some(json!(3)));
}

#[tokio::test(start_paused = true)]
async fn progress_resets_the_timeout_when_asked_up_to_the_cap() {
    let mut h = harness();
    let o = CallOptions {
        timeout: Duration::from_secs(2),
        progress: Some(Arc::new(|_| {})),
        reset_timeout_on_progress: true,
        max_total: Some(Duration::from_secs(5)),
        relay: None,
    };
    let c = h.client.clone();
    let start = Instant::now();
    let call = tokio::spawn(async move {
        let r = c.call_tool("slow", json!({}), &o).await;
        (r, start.elapsed())
    });
    let req = h.sent.recv().await.unwrap();
    let token = req["params"]["_meta"]["progressToken"].clone();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        reply(
            &h.inbound,
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1}}),
        );
    }
    let (result, took) = call.await.unwrap();
    assert!(matches!(result, Err(CallError::Timeout { .. })));
    assert!(
        took >= Duration::from_secs(4) && took <= Duration::from_secs(5),
        "reset by progress, capped: {took:?}"
    );
}

#[tokio::test]
async fn server_requests_are_answered() {
    let h = harness();
    let ask = |id: u64, method: &str| {
        let out = reply(
            &h.inbound,
            json!({"jsonrpc": "2.0", "id": id, "method": method}),
        )
        .expect("a reply");
        serde_json::from_slice::<Value>(out.line()).unwrap()
    };
    assert_eq!(ask(1, "ping")["result"], json!({}));
    assert_eq!(
        ask(2, "roots/list")["result"]["roots"][0]["uri"],
        "file:///work"
    );
    let sampling = ask(3, "sampling/createMessage");
    assert_eq!(sampling["error"]["code"], -32601);
    assert!(
        sampling["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sampling/createMessage is not available")
    );
    assert!(
        ask(4, "elicitation/create")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("elicitation/create")
    );
    assert_eq!(ask(5, "something/else")["error"]["code"], -32601);
}

#[tokio::test]
async fn list_changed_storms_coalesce_and_garbage_is_skipped() {
    let mut h = harness();
    for _ in 0..100 {
        reply(
            &h.inbound,
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
        );
    }
    assert_eq!(h.events.recv().await, Some(ClientEvent::ToolsChanged));
    assert!(h.events.try_recv().is_err(), "one event for a storm");
    h.inbound.tools_changed_handled();
    reply(
        &h.inbound,
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
    );
    assert_eq!(h.events.recv().await, Some(ClientEvent::ToolsChanged));

    assert!(h.inbound.dispatch_line(b"this is not json").is_none());
    assert!(h.inbound.dispatch_line(&[0xff, 0xfe, b'{']).is_none());
    assert_eq!(h.inbound.invalid_lines(), 2);
}

/// A server's request is answered with its id exactly as the server wrote it: a number beyond
/// double precision, a fraction, a string with escapes.
#[tokio::test]
async fn server_requests_are_answered_with_their_id_byte_for_byte() {
    let h = harness();
    for id in [
        "123456789012345678901234567890123456789012345678901234567890",
        "1.0",
        "-0",
        r#""r\u0041\/7""#,
    ] {
        let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        let out = h.inbound.dispatch_line(line.as_bytes()).expect("a reply");
        let answer = std::str::from_utf8(out.line()).unwrap();
        assert_eq!(
            answer,
            format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#),
            "{id}"
        );
    }
}

/// A relay that answers requests with their method and remembers notifications.
struct Recorder {
    owner: String,
    notes: Mutex<Vec<String>>,
    /// When set, requests never answer (until the test drops them).
    hang: bool,
}

impl Recorder {
    fn new(owner: &str, hang: bool) -> Arc<Self> {
        Arc::new(Self {
            owner: owner.into(),
            notes: Mutex::new(Vec::new()),
            hang,
        })
    }
}

impl CallRelay for Recorder {
    fn owner(&self) -> &str {
        &self.owner
    }
    fn request(&self, method: &str, _: Option<Box<RawValue>>) -> PeerAnswer {
        let answer = json!({ "by": self.owner, "method": method });
        let hang = self.hang;
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Ok(to_raw(&answer))
        })
    }
    fn notification(&self, method: &str, params: Option<&RawValue>) {
        self.notes.lock().unwrap().push(format!(
            "{method} {}",
            params.map(RawValue::get).unwrap_or("")
        ));
    }
}

impl Peer for Recorder {
    fn request(&self, server: &str, method: &str, params: Option<Box<RawValue>>) -> PeerAnswer {
        assert_eq!(server, "fake");
        CallRelay::request(self, method, params)
    }
    fn notification(&self, _: &str, method: &str, params: Option<&RawValue>) {
        CallRelay::notification(self, method, params);
    }
}

fn relayed(relay: &Arc<Recorder>) -> CallOptions {
    CallOptions {
        timeout: Duration::from_secs(5),
        relay: Some(relay.clone() as Arc<dyn CallRelay>),
        ..Default::default()
    }
}

/// The next message the client sent that is a response (skipping requests).
async fn next_response(h: &mut Harness) -> Value {
    loop {
        let v = h.sent.recv().await.expect("the client sent something");
        if v.get("method").is_none() {
            return v;
        }
    }
}

#[tokio::test]
async fn a_request_during_a_call_goes_to_that_calls_relay_and_back_under_the_servers_id() {
    let mut h = harness();
    let alice = Recorder::new("alice", false);
    let c = h.client.clone();
    let o = relayed(&alice);
    let call = tokio::spawn(async move { c.call_tool("ask", json!({}), &o).await });
    let sent = h.sent.recv().await.unwrap();
    // Over a shared stream (stdio) the relation is inferred: one owner's call is pending.
    let line =
        json!({"jsonrpc": "2.0", "id": "s-1", "method": "sampling/createMessage", "params": {}});
    assert!(
        h.inbound
            .dispatch_line(line.to_string().as_bytes())
            .is_none(),
        "answered later"
    );
    let answer = next_response(&mut h).await;
    assert_eq!(answer["id"], "s-1");
    assert_eq!(
        answer["result"],
        json!({"by": "alice", "method": "sampling/createMessage"})
    );
    // A log message during the call goes to the same relay.
    reply(
        &h.inbound,
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "hi"}}),
    );
    assert_eq!(alice.notes.lock().unwrap().len(), 1);
    reply(
        &h.inbound,
        json!({"jsonrpc": "2.0", "id": sent["id"], "result": {"content": []}}),
    );
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_explicit_relation_picks_the_call_even_with_several_owners() {
    let mut h = harness();
    let (alice, bob) = (Recorder::new("alice", false), Recorder::new("bob", false));
    let mut ids = Vec::new();
    for relay in [&alice, &bob] {
        let c = h.client.clone();
        let o = relayed(relay);
        tokio::spawn(async move { c.call_tool("ask", json!({}), &o).await });
        ids.push(h.sent.recv().await.unwrap()["id"].as_u64().unwrap());
    }
    let msg = |id: u64| {
        parse_message(
            json!({"jsonrpc": "2.0", "id": id, "method": "elicitation/create", "params": {}})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    };
    assert!(
        h.inbound
            .dispatch_on(msg(70), Relation::Call(ids[0]))
            .is_none()
    );
    assert_eq!(next_response(&mut h).await["result"]["by"], "alice");
    assert!(
        h.inbound
            .dispatch_on(msg(71), Relation::Call(ids[1]))
            .is_none()
    );
    assert_eq!(next_response(&mut h).await["result"]["by"], "bob");
    // Inferred with two owners pending: refused at once, never shown to the wrong session.
    let refused = h
        .inbound
        .dispatch_on(msg(72), Relation::Infer)
        .expect("an answer at once");
    let refused: Value = serde_json::from_slice(refused.line()).unwrap();
    assert_eq!(refused["id"], 72);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("several sessions"),
        "{refused}"
    );
}

#[tokio::test]
async fn unrelated_traffic_goes_to_the_peer_and_without_one_gets_the_default() {
    let mut h = harness();
    // No peer: roots from the client's own, sampling refused.
    let out = reply(
        &h.inbound,
        json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"}),
    )
    .unwrap();
    let out: Value = serde_json::from_slice(out.line()).unwrap();
    assert_eq!(out["result"]["roots"][0]["uri"], "file:///work");
    let peer = Recorder::new("peer", false);
    h.inbound.set_peer(peer.clone());
    let line = json!({"jsonrpc": "2.0", "id": 2, "method": "sampling/createMessage"});
    let none = h.inbound.dispatch_on(
        parse_message(line.to_string().as_bytes()).unwrap(),
        Relation::None,
    );
    assert!(none.is_none());
    assert_eq!(next_response(&mut h).await["result"]["by"], "peer");
    reply(
        &h.inbound,
        json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "x:/a"}}),
    );
    assert_eq!(
        peer.notes.lock().unwrap().as_slice(),
        [r#"notifications/resources/updated {"uri":"x:/a"}"#]
    );
    // list_changed of resources and prompts are the connection's events, coalesced.
    for _ in 0..3 {
        reply(
            &h.inbound,
            json!({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"}),
        );
        reply(
            &h.inbound,
            json!({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"}),
        );
    }
    assert_eq!(h.events.recv().await, Some(ClientEvent::ResourcesChanged));
    assert_eq!(h.events.recv().await, Some(ClientEvent::PromptsChanged));
    assert!(h.events.try_recv().is_err());
}

#[tokio::test]
async fn a_request_the_server_cancels_or_that_outlives_the_connection_is_dropped() {
    let mut h = harness();
    let peer = Recorder::new("peer", true);
    h.inbound.set_peer(peer);
    for id in 1..=MAX_SERVER_REQUESTS as u64 {
        assert!(
            reply(
                &h.inbound,
                json!({"jsonrpc": "2.0", "id": id, "method": "elicitation/create"})
            )
            .is_none()
        );
    }
    // Past the bound: refused at once.
    let over = reply(
        &h.inbound,
        json!({"jsonrpc": "2.0", "id": 999, "method": "elicitation/create"}),
    )
    .expect("refused");
    let over: Value = serde_json::from_slice(over.line()).unwrap();
    assert!(
        over["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many"),
        "{over}"
    );
    reply(
        &h.inbound,
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
    );
    assert_eq!(
        h.inbound.shared.server_requests.len(),
        MAX_SERVER_REQUESTS - 1
    );
    h.client.close("gone");
    assert!(h.inbound.shared.server_requests.is_empty());
    tokio::task::yield_now().await;
    assert!(
        h.sent.try_recv().is_err(),
        "nothing answered after a cancel or the end"
    );
}

#[tokio::test(start_paused = true)]
async fn a_log_flood_is_cut_to_the_bucket_before_it_is_routed() {
    let h = harness();
    let peer = Recorder::new("peer", false);
    h.inbound.set_peer(peer.clone());
    let log = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}});
    for _ in 0..1000 {
        reply(&h.inbound, log.clone());
    }
    assert_eq!(peer.notes.lock().unwrap().len(), LOG_BURST as usize);
    assert_eq!(h.client.dropped_logs(), 1000 - LOG_BURST as u64);
    // A second later the bucket has refilled by its rate.
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..1000 {
        reply(&h.inbound, log.clone());
    }
    assert_eq!(
        peer.notes.lock().unwrap().len(),
        (LOG_BURST + LOG_PER_SEC) as usize
    );
}
