//! The bridge in-process, over in-memory pipes, against a fake daemon on a real socket
//! (`tests/fake.rs`): relaying both ways, ids byte for byte, bad input, cancellation, stdin
//! closing, no daemon, a lost session, a call cut mid-stream, the server stream, batches.
//! (`tests/stdio_bridge.rs` runs the real binary against the real daemon.)

mod fake;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

use self::fake::Fake;
use super::answer::{is_response, whole_events};
use super::{Bridge, BridgeConfig};

/// Every wait of these tests: generous, so only a lost message fails them.
const WAIT: Duration = Duration::from_secs(10);

/// A client of an in-process bridge.
struct Client {
    input: Option<DuplexStream>,
    output: BufReader<DuplexStream>,
    bridge: tokio::task::JoinHandle<()>,
}

impl Client {
    /// A bridge for `home` (a lost daemon is waited for 3 s).
    fn start(home: &Path) -> Self {
        let (input, bridge_in) = tokio::io::duplex(1 << 16);
        let (bridge_out, output) = tokio::io::duplex(1 << 16);
        let mut config = BridgeConfig::new(home.to_owned(), None, None);
        config.patience = Duration::from_secs(3);
        let bridge = tokio::spawn(Bridge::run(
            config,
            Box::new(bridge_in),
            Box::new(bridge_out),
            std::future::pending(),
        ));
        Self {
            input: Some(input),
            output: BufReader::new(output),
            bridge,
        }
    }

    async fn send(&mut self, line: &str) {
        let input = self.input.as_mut().unwrap();
        input.write_all(line.as_bytes()).await.unwrap();
        input.write_all(b"\n").await.unwrap();
    }

    /// The next line on stdout, as written.
    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.output.read_line(&mut line)).await;
        assert!(
            matches!(read, Ok(Ok(n)) if n > 0),
            "no line within {WAIT:?}"
        );
        assert!(line.ends_with('\n'));
        line.trim_end().to_owned()
    }

    async fn next(&mut self) -> Value {
        serde_json::from_str(&self.line().await).unwrap()
    }

    /// The next response (notifications before it skipped).
    async fn answer(&mut self) -> Value {
        loop {
            let message = self.next().await;
            if message.get("method").is_none() {
                return message;
            }
        }
    }

    /// `initialize` (id 0, protocol `version`) and `notifications/initialized`; the answer.
    async fn handshake(&mut self, version: &str) -> Value {
        let hello = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {}, "clientInfo": { "name": "tester", "version": "1" } } });
        self.send(&hello.to_string()).await;
        // The first line: nothing (e.g. a server stream's message) comes before it.
        let answer = self.next().await;
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        answer
    }

    /// Closes stdin; the bridge must stop.
    async fn close(mut self) {
        drop(self.input.take());
        tokio::time::timeout(WAIT, &mut self.bridge)
            .await
            .expect("the bridge stops when stdin closes")
            .unwrap();
    }
}

/// Polls `cond` every 10 ms until it holds ([`WAIT`] at most).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn call(id: &str, tool: &str, meta: Value) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"a":1}},"_meta":{meta}}}}}"#
    )
}

/// Requests, notifications and answers go through unchanged: ids (a 30-digit number, `1.0`, a
/// string with an escape) byte for byte, progress before the response, the client's label.
#[tokio::test]
async fn messages_and_ids_are_relayed_byte_for_byte() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::start(home.path()).await;
    let mut client = Client::start(home.path());
    let hello = client.handshake("2025-06-18").await;
    assert_eq!(hello["result"]["protocolVersion"], "2025-06-18");

    for id in ["123456789012345678901234567890", "1.0", r#""a\u0041""#] {
        client
            .send(&call(id, "echo", json!({ "progressToken": 7 })))
            .await;
        let progress = client.line().await;
        assert!(
            progress.contains(r#""method":"notifications/progress""#),
            "{progress}"
        );
        let answer = client.line().await;
        assert!(
            answer.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"#)),
            "{answer}"
        );
    }
    client
        .send(r#"{"jsonrpc":"2.0","id":"x","method":"resources/list"}"#)
        .await;
    assert_eq!(client.next().await["result"]["method"], "resources/list");
    // The client's answer to a server request is POSTed like any message.
    client
        .send(r#"{"jsonrpc":"2.0","id":"srv-1","result":{}}"#)
        .await;
    until("the answer reached the daemon", || {
        fake.posted().iter().any(|b| b.contains("srv-1"))
    })
    .await;
    let session = fake
        .seen()
        .into_iter()
        .find(|s| s.path == "/session")
        .unwrap();
    let label: Value = serde_json::from_str(&session.body).unwrap();
    assert_eq!(label["label"], "stdio bridge (tester)");
    client.close().await;
}

/// Bad lines get a JSON-RPC error with `id: null` and the bridge goes on.
#[tokio::test]
async fn bad_lines_are_answered_with_errors_and_the_bridge_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let _fake = Fake::start(home.path()).await;
    let mut client = Client::start(home.path());
    client.handshake("2025-06-18").await;
    let cases = [
        ("this is not json", -32700),
        (r#"{"jsonrpc":"2.0","id":1"#, -32700),
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, -32600),
        (r#""a string""#, -32600),
        (r#"{"jsonrpc":"2.0"}"#, -32600),
        // An id the one-pass scan reads, but no id: a lone surrogate.
        (r#"{"jsonrpc":"2.0","id":"\ud800","method":"ping"}"#, -32600),
        // Batches exist only in 2025-03-26.
        (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, -32600),
    ];
    for (line, code) in cases {
        client.send(line).await;
        let answer = client.next().await;
        assert_eq!(answer["id"], Value::Null, "{line}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{line}: {answer}");
    }
    // Past the 4 MiB cap: refused without being buffered, and the next line is read.
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "x".repeat(5 << 20)
    );
    client.send(&long).await;
    let answer = client.next().await;
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit")
    );
    client
        .send(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#)
        .await;
    assert_eq!(client.next().await["id"], 2);
    client.close().await;
}

/// `notifications/cancelled` is relayed and the call's stream dropped; the call gets no answer.
#[tokio::test]
async fn a_cancelled_call_is_dropped_and_the_cancellation_relayed() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::start(home.path()).await;
    let mut client = Client::start(home.path());
    client.handshake("2025-06-18").await;
    client.send(&call("\"c1\"", "hang", json!({}))).await;
    client.line().await; // its progress: the call is running
    client
        .send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c1"}}"#)
        .await;
    until("the call's stream dropped", || fake.dropped() == 1).await;
    until("the cancellation relayed", || {
        fake.posted()
            .iter()
            .any(|b| b.contains("notifications/cancelled"))
    })
    .await;
    // Nothing was answered for it: the next line is the answer to the next request.
    client
        .send(r#"{"jsonrpc":"2.0","id":"after","method":"ping"}"#)
        .await;
    assert_eq!(client.next().await["id"], "after");
    client.close().await;
}

/// Stdin closing drops every request in flight and ends the session.
#[tokio::test]
async fn stdin_closing_drops_calls_in_flight_and_ends_the_session() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::start(home.path()).await;
    let mut client = Client::start(home.path());
    client.handshake("2025-06-18").await;
    for id in [1, 2] {
        client.send(&call(&id.to_string(), "hang", json!({}))).await;
        client.line().await;
    }
    client.close().await;
    assert_eq!(fake.dropped(), 2, "both calls' streams were dropped");
    let deleted: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.method == "DELETE")
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].path, "/session/s1");
}

/// Without a daemon every request is answered with how to start one; a daemon started later
/// is found by the next request (and gets the client's handshake first).
#[tokio::test]
async fn without_a_daemon_requests_say_how_to_start_one_until_one_runs() {
    let home = tempfile::tempdir().unwrap();
    let mut client = Client::start(home.path());
    let hello = client.handshake("2025-06-18").await;
    assert_eq!(hello["id"], 0);
    assert_eq!(hello["error"]["code"], -32000);
    let message = hello["error"]["message"].as_str().unwrap();
    for needle in ["revka daemon", "revka service start", "--start-daemon"] {
        assert!(message.contains(needle), "{message}");
    }
    let fake = Fake::start(home.path()).await;
    client
        .send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .await;
    assert_eq!(client.next().await["result"]["method"], "tools/list");
    let posted = fake.posted();
    assert!(posted[0].contains(r#""method":"initialize""#), "{posted:?}");
    assert!(
        posted[1].contains("notifications/initialized"),
        "{posted:?}"
    );
    client.close().await;
}

/// A daemon that names its Unix socket in `mcp.json` is sent every message there; with the
/// socket gone (or not one the bridge trusts), the bridge uses the TCP port.
#[tokio::test]
async fn messages_go_to_the_daemons_socket_and_to_tcp_without_it() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::start_with_socket(home.path()).await;
    let mut client = Client::start(home.path());
    client.handshake("2025-06-18").await;
    client.send(&call("1", "echo", json!({}))).await;
    assert_eq!(client.answer().await["id"], 1);
    let posts = fake.posted().len() as u64;
    assert!(
        fake.on_socket() >= posts,
        "{} requests on the socket, {posts} POSTs",
        fake.on_socket()
    );
    client.close().await;

    // The socket file removed: the next bridge's link goes to TCP.
    std::fs::remove_file(home.path().join(crate::http::unix::SOCKET_FILE)).unwrap();
    let before = fake.on_socket();
    let mut client = Client::start(home.path());
    client.handshake("2025-06-18").await;
    client.send(&call("2", "echo", json!({}))).await;
    assert_eq!(client.answer().await["id"], 2);
    assert_eq!(fake.on_socket(), before, "nothing more on the socket");
    client.close().await;

    // A regular file where the socket should be is not connected to.
    std::fs::write(home.path().join(crate::http::unix::SOCKET_FILE), "").unwrap();
    let mut client = Client::start(home.path());
    client.handshake("2025-06-18").await;
    client.send(&call("3", "echo", json!({}))).await;
    assert_eq!(client.answer().await["id"], 3);
    client.close().await;
}

/// A session the daemon no longer knows (a restarted daemon) is replaced: the handshake is
/// replayed on a new one, the client is told the tools may have changed, and the request that
/// found out is sent again.
#[tokio::test]
async fn an_unknown_session_is_replaced_and_the_request_sent_again() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::start(home.path()).await;
    let mut client = Client::start(home.path());
    client.handshake("2025-06-18").await;
    fake.forget_sessions();
    client.send(&call("5", "echo", json!({}))).await;
    assert_eq!(
        client.next().await["method"],
        "notifications/tools/list_changed"
    );
    assert_eq!(client.next().await["method"], "notifications/progress");
    assert_eq!(client.next().await["id"], 5);
    let on_s2: Vec<String> = fake
        .seen()
        .into_iter()
        .filter(|s| s.session.as_deref() == Some("s2"))
        .map(|s| s.body)
        .collect();
    assert!(on_s2[0].contains(r#""method":"initialize""#), "{on_s2:?}");
    assert!(on_s2[1].contains("notifications/initialized"), "{on_s2:?}");
    assert!(on_s2[2].contains("tools/call"), "{on_s2:?}");
    client.close().await;
}

/// A call whose stream breaks (the daemon died) is answered with an error, never sent again;
/// a call the daemon ended without an answer is answered too.
#[tokio::test]
async fn a_call_cut_mid_stream_is_answered_not_retried() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::start(home.path()).await;
    let mut client = Client::start(home.path());
    client.handshake("2025-06-18").await;
    client.send(&call("7", "break", json!({}))).await;
    let answer = client.answer().await;
    assert_eq!(answer["id"], 7);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("may or may not have run"), "{message}");
    let sent = fake
        .posted()
        .iter()
        .filter(|b| b.contains(r#""break""#))
        .count();
    assert_eq!(sent, 1, "never sent twice");
    client.send(&call("8", "abandon", json!({}))).await;
    let answer = client.next().await;
    assert_eq!(answer["id"], 8);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("without an answer")
    );
    client.close().await;
}

/// The server stream: opened only once `initialize` is answered, each message relayed,
/// reopened with `Last-Event-ID` after it ends, and anything that is not a JSON-RPC message
/// dropped.
#[tokio::test]
async fn the_server_stream_is_relayed_and_resumed_with_last_event_id() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::start(home.path()).await;
    let note = |n: u32| json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "n": n } });
    let first = format!(
        "retry: 10\n\n: keep-alive\n\nid: 1\ndata: {}\n\nid: 2\ndata: not json\n\nid: 3\ndata: {}\n\n",
        note(1),
        note(3)
    );
    // A priming event (an id, no data) is not relayed, but its id is the one resumed from.
    let second = format!("id: 4\ndata: {}\n\nid: 5\ndata:\n\n", note(4));
    let third = format!("id: 6\ndata: {}\n\n", note(6));
    fake.stream(&[&first, &second, &third]);
    let mut client = Client::start(home.path());
    client.handshake("2025-06-18").await;
    for n in [1, 3, 4, 6] {
        assert_eq!(client.next().await["params"]["n"], n);
    }
    let gets: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    assert_eq!(gets[0].last_event_id, None);
    assert_eq!(gets[1].last_event_id.as_deref(), Some("3"));
    assert_eq!(gets[1].session.as_deref(), Some("s1"));
    assert_eq!(gets[2].last_event_id.as_deref(), Some("5"));
    client.close().await;
}

/// A daemon without a server stream (405) is asked once, and the bridge works without it.
#[tokio::test]
async fn a_daemon_without_a_server_stream_is_asked_once() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::start(home.path()).await;
    let mut client = Client::start(home.path());
    client.handshake("2025-06-18").await;
    until("the stream was asked for", || fake.gets() == 1).await;
    for id in 1..=3 {
        client
            .send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#))
            .await;
        assert_eq!(client.next().await["id"], id);
    }
    assert_eq!(fake.gets(), 1);
    client.close().await;
}

/// In 2025-03-26 a batch is split, and its responses come back as one array (an invalid
/// element's error included); a batch of notifications gets no answer; an empty one is -32600.
#[tokio::test]
async fn batches_are_relayed_in_2025_03_26() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::start(home.path()).await;
    let mut client = Client::start(home.path());
    client.handshake("2025-03-26").await;
    client
        .send(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/roots/list_changed"},{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"id":3}]"#)
        .await;
    let answer = client.next().await;
    let mut ids: Vec<Value> = answer
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    ids.sort_by_key(|id| id.to_string());
    assert_eq!(ids, [json!(1), json!(2), Value::Null], "{answer}");
    client
        .send(r#"[{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}]"#)
        .await;
    client.send("[]").await;
    assert_eq!(client.next().await["error"]["code"], -32600);
    until("the notifications reached the daemon", || {
        fake.posted()
            .iter()
            .filter(|b| b.contains("roots/list_changed"))
            .count()
            == 2
    })
    .await;
    client.close().await;
}

/// A discovery file naming anything but a loopback `http` URL is refused.
#[tokio::test]
async fn a_discovery_file_naming_a_remote_host_is_refused() {
    let home = tempfile::tempdir().unwrap();
    crate::http::discovery::write_discovery(home.path(), "http://192.0.2.1:80/mcp").unwrap();
    let mut client = Client::start(home.path());
    let hello = client.handshake("2025-06-18").await;
    let message = hello["error"]["message"].as_str().unwrap();
    assert!(message.contains("not a loopback"), "{message}");
    client.close().await;
}

#[test]
fn responses_are_told_from_notifications_and_requests() {
    for (message, response) in [
        (r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, true),
        (
            r#"{"jsonrpc":"2.0","id":"a\"b,}","error":{"code":1,"message":"m"}}"#,
            true,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#,
            false,
        ),
        (
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            false,
        ),
        // Not in the daemon's own shape: parsed.
        (r#"{"result":{},"jsonrpc":"2.0","id":1}"#, true),
        (r#"{ "jsonrpc": "2.0", "method": "x" }"#, false),
    ] {
        assert_eq!(is_response(message.as_bytes()), response, "{message}");
    }
}

/// The answer's fast path reads exactly what the full SSE parser reads, or declines.
#[test]
fn the_fast_path_of_an_answer_reads_what_the_sse_parser_reads_or_declines() {
    use bytes::Bytes;
    use revka_mcp::sse::SseParser;

    let full = |chunk: &[u8]| {
        let mut parser = SseParser::new(1 << 20);
        parser.push(chunk);
        let mut events = Vec::new();
        while let Some(Ok(e)) = parser.next_event() {
            events.push((e.event, e.data));
        }
        events
    };
    let taken = [
        "event: message\ndata: {\"id\":1}\n\n",
        "data: {\"a\":1}\n\nevent: done\ndata: {}\n\n",
        ": keep-alive\n\ndata:no-space\n\n",
        "event:\ndata: x\n\n",
        "data: é\n\n",
    ];
    for text in taken {
        let chunk = Bytes::from(text);
        let fast = whole_events(&chunk).unwrap_or_else(|| panic!("declined {text:?}"));
        let fast: Vec<_> = fast
            .into_iter()
            .map(|(name, data)| {
                let name = name.map(|n| String::from_utf8(n.to_vec()).unwrap());
                (name, String::from_utf8(data.to_vec()).unwrap())
            })
            .collect();
        let mut slow = full(text.as_bytes());
        for (name, _) in &mut slow {
            if name.as_deref() == Some("") {
                *name = None;
            }
        }
        assert_eq!(fast, slow, "{text:?}");
    }
    let declined: [&[u8]; 7] = [
        b"data: a\n",               // not a whole event
        b"data: a\r\n\r\n",         // CR line ends
        b"data: a\ndata: b\n\n",    // two data lines
        b"id: 7\ndata: a\n\n",      // a field it does not read
        b"\xEF\xBB\xBFdata: a\n\n", // a byte-order mark
        b"data: \xFF\n\n",          // not UTF-8
        b"retry: 10\n\n",           // a field it does not read
    ];
    for chunk in declined {
        assert!(
            whole_events(&Bytes::copy_from_slice(chunk)).is_none(),
            "{:?}",
            String::from_utf8_lossy(chunk)
        );
    }
}
