//! Revka's MCP server end to end: the real daemon, its discovery file, sessions, the two-header
//! auth, JSON-RPC dispatch, SSE tool calls with progress, cancellation, expiry and eviction,
//! the session event stream, deferred activation, and every bad-input answer.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::StatusCode;
use revka_mcp::sse::SseEvent;
use serde_json::{Value, json};

use crate::harness::{
    EventStream, Served, Session, TestDaemon, TestHome, eventually_async, fixture_server,
    parse_sse, try_within, try_within_async,
};

fn messages(events: &[SseEvent]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.event.is_none() || e.event.as_deref() == Some("message"))
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

// ==== Discovery file and health ====

#[tokio::test(flavor = "multi_thread")]
async fn discovery_file_and_health() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = Served::start("").await;
    let path = s.home.path().join("mcp.json");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["pid"], s.daemon.child.id());
    assert!(
        doc["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let health = s.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["protocol_version"], "2024-11-05");
    assert_eq!(health["pid"], s.daemon.child.id());
    s.daemon.signal(Signal::SIGTERM);
    assert_eq!(s.daemon.wait(Duration::from_secs(30)).code(), Some(0));
    assert!(!path.exists(), "removed on graceful shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_records_why_each_tool_could_not_register() {
    // Two more fault servers whose names sanitise alike: `f.a__echo` and `f_a__echo` are both
    // `f_a__echo`, so every tool of `f_a` (the later in sorted order) loses to `f.a`'s.
    let fault = fixture_server("fault_server").display().to_string();
    let s = Served::start(&format!(
        "[[mcp.servers]]\nname = \"f.a\"\ncommand = \"{fault}\"\n\
         [[mcp.servers]]\nname = \"f_a\"\ncommand = \"{fault}\"\n"
    ))
    .await;
    let health = || s.health();
    let collision = "tool `echo` of server `f_a` maps to `f_a__echo`, already used by `echo` of \
                     `f.a`: not registered";
    let body = eventually_async("the collision in /health", async || {
        let body = health().await;
        body.to_string().contains(collision).then_some(body)
    })
    .await;
    assert_eq!(body["status"], "ok", "{body}");
    let skipped = body["skipped_tools"].as_array().expect("skipped_tools");
    let reason = |tool: &str| {
        skipped
            .iter()
            .filter(|e| e["tool"] == tool)
            .map(|e| e["reason"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // The default config: the session manager is off, so its chat tools are not registered
    // (the agent tools are: they run on the daemon's CLI fallback, `[agents] fallback`).
    for tool in [
        "create_chat_room",
        "wait_for_chat_message",
        "list_chat_rooms",
    ] {
        assert_eq!(
            reason(tool),
            ["needs the session manager ([session_manager] enabled = true)"],
            "{tool}: {body}"
        );
    }
    // The operator is enabled by default but not installed in this home.
    let operator = reason("revka-operator__*");
    assert_eq!(operator.len(), 1, "{body}");
    assert!(
        operator[0].starts_with("the operator is not installed"),
        "{body}"
    );
    // Each tool of `f_a` that lost its name, once each.
    let external = reason("(external)");
    assert!(external.iter().any(|r| r == collision), "{body}");
    assert_eq!(
        external.len(),
        external
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        "no duplicates: {body}"
    );
    assert!(
        external
            .iter()
            .all(|r| r.contains("of server `f_a` maps to `f_a__")),
        "{body}"
    );
    // The gateway's passthrough shows the same.
    let (gateway, token) = s.gateway();
    let proxied: Value = s
        .http
        .get(format!("{gateway}/api/mcp/health"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(proxied["skipped_tools"], body["skipped_tools"]);
    // What was skipped is not served; the winner of the name is.
    let a = s.session().await;
    let names = a.tool_names().await;
    assert!(
        !names
            .iter()
            .any(|n| n == "create_chat_room" || n.starts_with("revka-operator__")),
        "{names:?}"
    );
    let text = a
        .call_text("tool_search", json!({ "query": "select:f_a__echo" }))
        .await;
    assert!(text.contains("\"name\":\"f_a__echo\""), "{text}");
    assert!(
        a.call_text("f_a__echo", json!({ "text": "which" }))
            .await
            .contains("which")
    );
}

/// What a reader polling a discovery file saw.
#[derive(Debug, Default)]
struct DiscoveryReads {
    absent: u64,
    complete: u64,
    /// Distinct `url`s and `pid`s seen.
    urls: std::collections::BTreeSet<String>,
    pids: std::collections::BTreeSet<u64>,
    /// Anything that was not "absent" or "a complete, owner-only document".
    problems: Vec<String>,
}

/// Reads `path` in a tight loop until `stop`, recording into `reads`: each read must find no
/// file, or a complete `{url, pid, started_at}` document whose inode (the one read, through its
/// own handle) is 0600.
fn poll_discovery(
    path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (
    std::sync::Arc<std::sync::Mutex<DiscoveryReads>>,
    std::thread::JoinHandle<()>,
) {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let reads = std::sync::Arc::new(std::sync::Mutex::new(DiscoveryReads::default()));
    let shared = reads.clone();
    let thread = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let opened = std::fs::File::open(&path);
            let mut reads = shared.lock().unwrap();
            let mut file = match opened {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    reads.absent += 1;
                    continue;
                }
                Err(e) => {
                    reads.problems.push(format!("open: {e}"));
                    continue;
                }
            };
            bytes.clear();
            if let Err(e) = file.read_to_end(&mut bytes) {
                reads.problems.push(format!("read: {e}"));
                continue;
            }
            let mode = file.metadata().map(|m| m.permissions().mode() & 0o777);
            if !matches!(mode, Ok(0o600)) {
                reads.problems.push(format!("mode {mode:?}"));
            }
            let doc: Value = match serde_json::from_slice(&bytes) {
                Ok(doc) => doc,
                Err(e) => {
                    let text = String::from_utf8_lossy(&bytes);
                    reads.problems.push(format!("unparseable ({e}): {text:?}"));
                    continue;
                }
            };
            match (
                doc["url"].as_str(),
                doc["pid"].as_u64(),
                doc["started_at"].as_str(),
            ) {
                (Some(url), Some(pid), Some(_)) if url.starts_with("http://127.0.0.1:") => {
                    reads.complete += 1;
                    reads.urls.insert(url.to_owned());
                    reads.pids.insert(pid);
                }
                _ => reads.problems.push(format!("incomplete: {doc}")),
            }
        }
    });
    (reads, thread)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_discovery_file_is_atomic_owner_only_and_re_read_by_the_gateway() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let home = TestHome::new();
    home.write_config("[mcp]\nenabled = true\n");
    let path = home.path().join("mcp.json");
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, reader) = poll_discovery(path.clone(), stop.clone());
    let (gateway_reads, gateway_reader) =
        poll_discovery(home.path().join("gateway.json"), stop.clone());
    // A reader has seen a document naming `pid` (its thread may be descheduled for a while on a
    // loaded machine: wait for it rather than assume it).
    let seen_pid = |reads: &std::sync::Mutex<DiscoveryReads>, pid: u64| {
        try_within(Duration::from_secs(60), || {
            reads.lock().unwrap().pids.contains(&pid)
        })
        .is_some()
    };
    let seen_url = |url: &Value| {
        let url = url.as_str().unwrap().to_owned();
        try_within(Duration::from_secs(60), || {
            reads.lock().unwrap().urls.contains(&url)
        })
        .is_some()
    };

    // The daemon starts, stops and starts again on the same home while the readers poll.
    for _ in 0..3 {
        let mut daemon = TestDaemon::start(&home, &[]);
        let pid = u64::from(daemon.child.id());
        eventually_async("mcp.json names the new daemon", async || {
            read_json(&path).is_some_and(|doc| doc["pid"] == pid)
        })
        .await;
        assert!(seen_pid(&reads, pid), "the reader saw mcp.json");
        assert!(seen_pid(&gateway_reads, pid), "the reader saw gateway.json");
        daemon.signal(Signal::SIGTERM);
        assert_eq!(daemon.wait(Duration::from_secs(30)).code(), Some(0));
        assert!(!path.exists(), "removed on graceful shutdown");
        assert!(
            !home.path().join("gateway.json").exists(),
            "so is gateway.json"
        );
    }

    // The MCP server restarts inside one daemon, on a new port: the gateway's discovery,
    // cached by the file's mtime, follows.
    let daemon = TestDaemon::start(&home, &[]);
    eventually_async("mcp.json readable", async || read_json(&path).is_some()).await;
    let served = read_json(&path).unwrap();
    let doc: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("gateway.json")).unwrap()).unwrap();
    let gateway = doc["url"].as_str().unwrap().to_owned();
    let token = std::fs::read_to_string(home.path().join("gateway.token")).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let discovery = || async {
        http.get(format!("{gateway}/api/mcp/discovery"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let before = discovery().await;
    assert_eq!(before["available"], true, "{before}");
    assert_eq!(before["url"], served["url"]);
    let mtime = || std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let mut after = Value::Null;
    // A restart may, rarely, be given the same port again: restart until it is not.
    for _ in 0..5 {
        let written = mtime();
        let resp = http
            .post(format!("{gateway}/api/actors/root/mcp_http/restart"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let rewritten = try_within_async(Duration::from_secs(10), async || {
            mtime().is_some_and(|m| Some(m) != written)
        })
        .await
        .is_some();
        assert!(rewritten, "mcp.json written again after the restart");
        let current = read_json(&path).expect("a complete document");
        // The restarted server may take a moment to answer the gateway's health probe.
        after = match try_within_async(Duration::from_secs(30), async || {
            let after = discovery().await;
            (after["available"] == true && after["url"] == current["url"]).then_some(after)
        })
        .await
        {
            Some(after) => after,
            None => discovery().await,
        };
        assert_eq!(
            after["url"], current["url"],
            "the gateway re-read it: {after}"
        );
        assert!(seen_url(&current["url"]), "the reader saw it");
        if current["url"] != served["url"] {
            break;
        }
    }
    assert_eq!(after["available"], true, "{after}");
    assert_ne!(
        after["url"], before["url"],
        "a new port, and the gateway knows it"
    );
    drop(daemon);

    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    gateway_reader.join().unwrap();
    for (name, reads) in [("mcp.json", &reads), ("gateway.json", &gateway_reads)] {
        let reads = reads.lock().unwrap();
        assert!(reads.problems.is_empty(), "{name}: {:?}", reads.problems);
        assert!(reads.absent > 0 && reads.complete > 0, "{name}: {reads:?}");
        assert!(reads.pids.len() >= 4, "one per daemon: {name}: {reads:?}");
    }
}

/// A JSON file, if present and complete.
fn read_json(path: &std::path::Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

// ==== Auth ====

#[tokio::test(flavor = "multi_thread")]
async fn every_auth_failure_is_a_401_with_a_json_rpc_body() {
    let s = Served::start("").await;
    let a = s.session().await;
    let b = s.session().await;
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }).to_string();
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("no headers", s.http.post(&s.url)),
        (
            "no session header",
            s.http.post(&s.url).bearer_auth(&a.token),
        ),
        (
            "no bearer",
            s.http.post(&s.url).header("X-Revka-Session", &a.id),
        ),
        (
            "empty bearer",
            s.http
                .post(&s.url)
                .header("Authorization", "Bearer ")
                .header("X-Revka-Session", &a.id),
        ),
        (
            "empty session",
            s.http
                .post(&s.url)
                .bearer_auth(&a.token)
                .header("X-Revka-Session", ""),
        ),
        (
            "wrong scheme",
            s.http
                .post(&s.url)
                .header("Authorization", format!("Basic {}", a.token))
                .header("X-Revka-Session", &a.id),
        ),
        (
            "wrong token",
            s.http
                .post(&s.url)
                .bearer_auth("0".repeat(64))
                .header("X-Revka-Session", &a.id),
        ),
        (
            "another session's token",
            s.http
                .post(&s.url)
                .bearer_auth(&b.token)
                .header("X-Revka-Session", &a.id),
        ),
        (
            "unknown session",
            s.http
                .post(&s.url)
                .bearer_auth(&a.token)
                .header("X-Revka-Session", "f".repeat(32)),
        ),
    ];
    for (case, request) in cases {
        let resp = request
            .header("content-type", "application/json")
            .body(ping.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{case}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["jsonrpc"], "2.0", "{case}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("unauthorized"),
            "{case}: {body}"
        );
    }
    let (status, body) = a
        .rpc(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!({})));

    // The events stream needs only the bearer, which must be the session's own.
    let events = |token: &str| {
        s.http
            .get(format!("{}/session/{}/events", s.base, a.id))
            .bearer_auth(token.to_owned())
            .send()
    };
    assert_eq!(
        events(&b.token).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Ending a session needs its own token too.
    let end = s
        .http
        .delete(format!("{}/session/{}", s.base, a.id))
        .bearer_auth(&b.token)
        .send()
        .await
        .unwrap();
    assert_eq!(end.status(), StatusCode::UNAUTHORIZED);
    let end = s
        .http
        .delete(format!("{}/session/{}", s.base, a.id))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(end.status(), StatusCode::NO_CONTENT);
    let (status, _) = a
        .rpc(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an ended session is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn non_loopback_host_or_origin_is_refused() {
    let s = Served::start("").await;
    let a = s.session().await;
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }).to_string();
    let resp = a
        .post()
        .header("Host", "evil.example")
        .body(ping.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = a
        .post()
        .header("Origin", "http://evil.example")
        .body(ping.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = s
        .http
        .get(format!("{}/health", s.base))
        .header("Origin", "null")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = a
        .post()
        .header("Origin", "http://localhost:5173")
        .body(ping)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "a loopback origin is fine");
}

// ==== Methods and bad input ====

#[tokio::test(flavor = "multi_thread")]
async fn methods_negotiation_and_bad_input() {
    let s = Served::start("").await;
    let a = s.session().await;
    for (asked, answered) in [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", "2024-11-05"),
        ("1999-01-01", "2024-11-05"),
    ] {
        let (status, body) = a
            .rpc(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": asked, "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } }))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["result"]["protocolVersion"], answered);
        assert_eq!(body["result"]["serverInfo"]["name"], "revka-mcp");
        assert_eq!(body["result"]["capabilities"]["tools"]["listChanged"], true);
        let instructions = body["result"]["instructions"].as_str().unwrap();
        assert!(
            instructions.contains("Fault tools for tests.")
                && instructions.contains("<available-deferred-tools>")
        );
        assert!(instructions.contains("fault__echo - "), "{instructions}");
    }
    let (_, body) = a
        .rpc(json!({ "jsonrpc": "2.0", "id": "x", "method": "no/such_method" }))
        .await;
    assert_eq!(
        (&body["error"]["code"], &body["id"]),
        (&json!(-32601), &json!("x"))
    );
    let (_, body) = a.rpc(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "nope" } })).await;
    assert_eq!(body["error"]["code"], -32602);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown tool: nope")
    );
    let (_, body) = a.rpc(json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": { "name": "tool_search", "arguments": [1] } })).await;
    assert_eq!(body["error"]["code"], -32602);

    let send = |body: Vec<u8>, content_type: &str| {
        s.http
            .post(&s.url)
            .bearer_auth(&a.token)
            .header("X-Revka-Session", &a.id)
            .header("content-type", content_type.to_owned())
            .body(body)
            .send()
    };
    let resp = send(b"{not json".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], -32700);
    let resp = send(br#"{"id":1,"method":"ping"}"#.to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        -32600,
        "missing jsonrpc"
    );
    let resp = send(
        br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        -32600,
        "batches are not supported"
    );
    let resp = send(b"{}".to_vec(), "text/plain").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let resp = send(vec![b' '; 5 << 20], "application/json").await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        resp.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4 MiB")
    );
    let resp = send(
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })
            .to_string()
            .into_bytes(),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // GET /mcp is a session's server-to-client stream: without credentials, 401. Methods
    // /mcp does not take are 405.
    let resp = s.http.get(&s.url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s.http.put(&s.url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET, POST, DELETE");

    // POST /session validation.
    let resp = s
        .http
        .post(format!("{}/session", s.base))
        .header("content-type", "application/json")
        .body(r#"{"cwd":"/definitely/not/here"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        resp.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    let resp = s
        .http
        .post(format!("{}/session", s.base))
        .header("content-type", "application/json")
        .body(r#"{"cwd":"/"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["cwd"], "/");
    let resp = s
        .http
        .post(format!("{}/session", s.base))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

// ==== Calls ====

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_call_streams_progress_then_one_result_then_done() {
    let s = Served::start("").await;
    let a = s.session().await;
    a.call_text("tool_search", json!({ "query": "select:fault__progress" }))
        .await;
    for token in [json!(7), json!("tok-α")] {
        let events = a
            .call(
                json!(42),
                "fault__progress",
                json!({ "steps": 3, "interval_ms": 5 }),
                Some(token.clone()),
            )
            .await;
        assert!(
            events
                .iter()
                .all(|e| e.event.is_none() || e.event.as_deref() == Some("done")),
            "unnamed or done only"
        );
        assert_eq!(events.last().unwrap().event.as_deref(), Some("done"));
        let msgs = messages(&events);
        let progress: Vec<&Value> = msgs
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .collect();
        assert_eq!(progress.len(), 3);
        assert!(
            progress
                .iter()
                .all(|p| p["params"]["progressToken"] == token),
            "the caller's token, same JSON type"
        );
        let results: Vec<&Value> = msgs.iter().filter(|m| m.get("result").is_some()).collect();
        assert_eq!(results.len(), 1, "exactly one response");
        assert_eq!(results[0]["id"], 42);
        assert_eq!(results[0]["result"]["content"][0]["text"], "done");
        assert_eq!(results[0]["result"]["isError"], false);
    }
    // Without a token, Revka mints one.
    let events = a
        .call(
            json!(43),
            "fault__progress",
            json!({ "steps": 2, "interval_ms": 1 }),
            None,
        )
        .await;
    let msgs = messages(&events);
    let minted = &msgs[0]["params"]["progressToken"];
    assert!(minted.as_str().unwrap().starts_with("revka-"), "{msgs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancellation_by_notification_reaches_the_upstream_server() {
    let s = Served::start("").await;
    let a = s.session().await;
    a.call_text("tool_search", json!({ "query": "select:fault__hang" }))
        .await;
    let call = tokio::spawn({
        let a = a.clone();
        async move { a.call(json!(77), "fault__hang", json!({}), None).await }
    });
    assert!(
        try_within_async(Duration::from_secs(10), async || s
            .recorded()
            .iter()
            .any(|m| m["params"]["name"] == "hang"))
        .await
        .is_some(),
        "the call reached the server"
    );
    let resp = a
        .post()
        .body(json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 77, "reason": "user" } }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let events = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the stream ended")
        .unwrap();
    assert!(
        messages(&events).iter().all(|m| m.get("result").is_none()),
        "no response to a cancelled call"
    );
    assert!(
        try_within_async(Duration::from_secs(10), async || s
            .recorded()
            .iter()
            .any(|m| m["method"] == "notifications/cancelled"))
        .await
        .is_some(),
        "upstream told"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_mid_call_cancels_it_upstream() {
    let s = Served::start("").await;
    let a = s.session().await;
    a.call_text("tool_search", json!({ "query": "select:fault__hang" }))
        .await;
    let body = json!({ "jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": { "name": "fault__hang", "arguments": {} } });
    let resp = a.post().body(body.to_string()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        try_within_async(Duration::from_secs(10), async || s
            .recorded()
            .iter()
            .any(|m| m["params"]["name"] == "hang"))
        .await
        .is_some()
    );
    drop(resp); // hang up
    assert!(
        try_within_async(Duration::from_secs(10), async || s
            .recorded()
            .iter()
            .any(|m| m["method"] == "notifications/cancelled"))
        .await
        .is_some(),
        "the upstream server was told"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_right_after_the_result_is_not_an_error() {
    // Debug logs, so an abandoned call ("call abandoned") would show.
    let s = Served::start_with_env("", &[("RUST_LOG", "info,revka=debug")]).await;
    let a = s.session().await;
    a.call_text(
        "tool_search",
        json!({ "query": "select:fault__echo,fault__progress" }),
    )
    .await;
    let pid_before = fault_pid(&s).await;
    let log_from = s.daemon.stderr().len();
    // A quick call (answered with its headers in one write) and a streamed one (headers first,
    // then progress, then the result), each hung up on as soon as the result event is in.
    const ROUNDS: u64 = 8;
    for round in 0..ROUNDS {
        let quick = hang_up_after_result(
            &s,
            &a,
            json!({ "jsonrpc": "2.0", "id": round, "method": "tools/call",
                "params": { "name": "fault__echo", "arguments": { "round": round } } }),
        )
        .await;
        assert!(quick.contains(&format!(r#"\"round\":{round}"#)), "{quick}");
        let streamed = hang_up_after_result(
            &s,
            &a,
            json!({ "jsonrpc": "2.0", "id": 100 + round, "method": "tools/call",
                "params": { "name": "fault__progress", "arguments": { "steps": 2, "interval_ms": 60 },
                    "_meta": { "progressToken": round } } }),
        )
        .await;
        assert!(streamed.contains("notifications/progress"), "{streamed}");
    }
    // The session and the server are fine: the same session calls again, the same process
    // answers.
    assert!(
        a.call_text("fault__echo", json!({ "after": 1 }))
            .await
            .contains("after")
    );
    assert_eq!(
        fault_pid(&s).await,
        pid_before,
        "the server was not restarted"
    );
    // Every hung-up call counts as ok, none as cancelled.
    let scrape = || s.metrics();
    let count = |samples: &[revka_actors::metrics::Sample], tool: &str, outcome: &str| {
        samples
            .iter()
            .find(|m| {
                m.name == "revka_tool_calls_total"
                    && m.label("tool") == Some(tool)
                    && m.label("outcome") == Some(outcome)
            })
            .map(|m| m.value)
    };
    let samples = scrape().await;
    assert_eq!(
        count(&samples, "fault__echo", "ok"),
        Some(ROUNDS as f64 + 1.0)
    );
    assert_eq!(
        count(&samples, "fault__progress", "ok"),
        Some(ROUNDS as f64)
    );
    for tool in ["fault__echo", "fault__progress"] {
        for outcome in ["cancelled", "error"] {
            assert_eq!(count(&samples, tool, outcome), None, "{tool} {outcome}");
        }
    }
    // Nothing in the log about them: no warning, no error, no abandoned call.
    let log = s.daemon.stderr();
    let log = &log[log_from..];
    for line in log.lines() {
        assert!(
            !line.contains(" WARN ") && !line.contains(" ERROR ") && !line.contains("abandoned"),
            "{line}\n{log}"
        );
    }

    // The control: a client that hangs up before the result abandons its call, and both the
    // log and the metrics say so.
    hang_up_at(
        &s,
        &a,
        json!({ "jsonrpc": "2.0", "id": 999, "method": "tools/call",
            "params": { "name": "fault__progress", "arguments": { "steps": 50, "interval_ms": 100 },
                "_meta": { "progressToken": 999 } } }),
        "notifications/progress",
    )
    .await;
    eventually_async("an abandoned call is logged at debug", async || {
        s.daemon.stderr().contains("call abandoned")
    })
    .await;
    let cancelled = try_within_async(Duration::from_secs(30), async || {
        count(&scrape().await, "fault__progress", "cancelled")
    })
    .await;
    assert_eq!(cancelled, Some(1.0));
}

/// Sends `body` (a `tools/call`) on a raw connection, reads until its result event is in, and
/// closes the connection at once. Returns what was read.
async fn hang_up_after_result(s: &Served, session: &Session, body: Value) -> String {
    hang_up_at(s, session, body, r#""result":"#).await
}

/// Sends `body` (a `tools/call`) on a raw connection, reads until the first event containing
/// `mark` is complete, and closes the connection at once. Returns what was read.
async fn hang_up_at(s: &Served, session: &Session, body: Value, mark: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         X-Revka-Session: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        session.token,
        session.id,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&seen);
        // The event is complete once the blank line after it is in.
        if let Some(at) = text.find(mark)
            && text[at..].contains("\n\n")
        {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            // Returning drops `stream`: the client hangs up.
            return text.into_owned();
        }
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("the event within 30 s")
            .unwrap();
        assert!(n > 0, "the stream ended before {mark}: {text}");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// The pid of the fault server's process (from its introspection details).
async fn fault_pid(s: &Served) -> u64 {
    let (gateway, token) = s.gateway();
    let node: Value = s
        .http
        .get(format!(
            "{gateway}/api/actors/root/mcp_servers/mcp:fault/process"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    node["details"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("{node}"))
}

// ==== Sessions ====

#[tokio::test(flavor = "multi_thread")]
async fn sessions_expire_when_idle_and_the_longest_idle_is_evicted_at_the_cap() {
    // No eviction floor: any session not in use may be evicted (the floor has its own tests).
    let s = Served::start(
        "[sessions]\nidle_timeout_secs = 2\nmax_sessions = 3\nevict_idle_floor_secs = 0\n",
    )
    .await;
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    let first = s.session().await;
    let second = s.session().await;
    let third = s.session().await;
    assert_eq!(first.rpc(ping.clone()).await.0, StatusCode::OK); // second is now the longest idle
    let _fourth = s.session().await;
    assert_eq!(
        second.rpc(ping.clone()).await.0,
        StatusCode::UNAUTHORIZED,
        "evicted"
    );
    assert_eq!(third.rpc(ping.clone()).await.0, StatusCode::OK);
    assert_eq!(first.rpc(ping.clone()).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        first.rpc(ping).await.0,
        StatusCode::UNAUTHORIZED,
        "expired after 2 s idle"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deferred_activation_is_per_session() {
    let s = Served::start("").await;
    let a = s.session().await;
    let b = s.session().await;
    let all = a.tool_names().await;
    assert!(
        all.is_sorted() && all.contains(&"system_dashboard".to_owned()),
        "{all:?}"
    );
    assert_eq!(a.served_tool_names().await, ["tool_search"]);
    let text = a
        .call_text(
            "tool_search",
            json!({ "query": "select:fault__echo,nope__x" }),
        )
        .await;
    assert!(
        text.contains("<functions>") && text.contains("\"name\":\"fault__echo\""),
        "{text}"
    );
    assert!(text.contains("Not found: nope__x"), "{text}");
    assert_eq!(
        a.served_tool_names().await,
        ["fault__echo", "tool_search"],
        "sorted, with the activated tool"
    );
    assert_eq!(
        b.served_tool_names().await,
        ["tool_search"],
        "no leak into another session"
    );
    assert!(
        a.call_text("fault__echo", json!({ "text": "hi" }))
            .await
            .contains("hi")
    );
    let (_, body) = b.rpc(json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": { "name": "fault__echo" } })).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deferred"),
        "{body}"
    );
    // Keyword search ranks, caps and activates.
    let text = b
        .call_text(
            "tool_search",
            json!({ "query": "sleep", "max_results": "2" }),
        )
        .await;
    assert!(text.contains("fault__sleep"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_deferred_loading_every_tool_is_listed() {
    let s = Served::start("").await;
    drop(s);
    let home = TestHome::new();
    home.write_config(&format!(
        "[mcp]\nenabled = true\ndeferred_loading = false\n[[mcp.servers]]\nname = \"fault\"\ncommand = \"{}\"\n",
        fixture_server("fault_server").display()
    ));
    let _daemon = TestDaemon::start(&home, &[]);
    let discovery = home.path().join("mcp.json");
    eventually_async("mcp.json written", async || discovery.exists()).await;
    let doc: Value = serde_json::from_slice(&std::fs::read(&discovery).unwrap()).unwrap();
    let url = doc["url"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let body: Value = http
        .post(url.replace("/mcp", "/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = Session {
        url: url.clone(),
        id: body["session_id"].as_str().unwrap().into(),
        token: body["token"].as_str().unwrap().into(),
        http,
    };
    let names = eventually_async("fault__echo listed", async || {
        let names = session.tool_names().await;
        names.contains(&"fault__echo".to_owned()).then_some(names)
    })
    .await;
    assert!(
        names.contains(&"fault__echo".to_owned()) && !names.contains(&"tool_search".to_owned()),
        "{names:?}"
    );
}

// ==== The session event stream ====

#[tokio::test(flavor = "multi_thread")]
async fn the_session_stream_carries_progress_tool_changes_and_lag() {
    let s = Served::start("").await;
    let a = s.session().await;
    a.call_text(
        "tool_search",
        json!({ "query": "select:fault__progress,fault__set_tools" }),
    )
    .await;
    let resp = s
        .http
        .get(format!("{}/session/{}/events", s.base, a.id))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let mut stream = resp;
    // Progress, with tool and timestamp.
    a.call(
        json!(1),
        "fault__progress",
        json!({ "steps": 2, "interval_ms": 1 }),
        Some(json!(5)),
    )
    .await;
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|e: &&SseEvent| e.event.is_none())
        .count()
        < 2
    {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.extend(parse_sse(&chunk));
    }
    let progress: Value =
        serde_json::from_str(&seen.iter().find(|e| e.event.is_none()).unwrap().data).unwrap();
    assert_eq!(progress["token"], 5);
    assert_eq!(progress["tool"], "fault__progress");
    assert!(progress["timestamp"].as_str().unwrap().ends_with('Z'));
    // A server's tool list changes: the stream says so.
    a.call_text("fault__set_tools", json!({ "count": 2 })).await;
    let mut changed = false;
    for _ in 0..50 {
        let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await
        else {
            break;
        };
        if parse_sse(&chunk)
            .iter()
            .any(|e| e.event.as_deref() == Some("tools_changed"))
        {
            changed = true;
            break;
        }
    }
    assert!(changed, "tools_changed event");

    // A subscriber that does not read falls behind and is told how many events it lost. A raw
    // connection with a tiny receive buffer, so the kernel cannot absorb the whole burst on its
    // behalf (reqwest's autotuned socket buffers hold megabytes on loopback).
    let mut slow = stalled_subscriber(&s.base, &a.id, &a.token).await;
    a.call(
        json!(2),
        "fault__progress",
        json!({ "steps": 20000, "interval_ms": 0 }),
        Some(json!(6)),
    )
    .await;
    let lagged = read_until_lagged(&mut slow).await;
    assert!(lagged["dropped"].as_u64().unwrap() > 0, "{lagged}");
}

/// `tool_search`'s keywords rank only what is still deferred in the session: an activated
/// tool (here `echo`, whose name is the query, so it would rank first) takes no slot.
#[tokio::test(flavor = "multi_thread")]
async fn keyword_search_spends_no_slot_on_a_tool_the_session_sees() {
    let s = Served::start("").await;
    let session = s.session().await;
    session
        .call_text("tool_search", json!({ "query": "select:fault__echo" }))
        .await;
    let text = session
        .call_text("tool_search", json!({ "query": "echo", "max_results": 1 }))
        .await;
    assert!(
        text.contains(r#""name":"fault__slow_echo""#) && !text.contains(r#""name":"fault__echo""#),
        "{text}"
    );
    // A fresh session has `echo` still deferred: it ranks first.
    let fresh = s.session().await;
    let text = fresh
        .call_text("tool_search", json!({ "query": "echo", "max_results": 1 }))
        .await;
    assert!(text.contains(r#""name":"fault__echo""#), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_activation_sends_list_changed_to_that_session_only() {
    let s = Served::start("").await;
    let a = s.session().await;
    let b = s.session().await;
    let mut a_events = EventStream::open(&s, &a).await;
    let mut b_events = EventStream::open(&s, &b).await;
    // Both clients have seen their tool list.
    assert_eq!(a.served_tool_names().await, ["tool_search"]);
    assert_eq!(b.served_tool_names().await, ["tool_search"]);

    let list_changed = json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" });
    let activate = |session: &Session, query: &str| {
        let (session, query) = (session.clone(), query.to_owned());
        async move {
            messages(
                &session
                    .call(json!(7), "tool_search", json!({ "query": query }), None)
                    .await,
            )
        }
    };
    // On the call stream: the notification, then the result.
    let msgs = activate(&a, "select:fault__echo").await;
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0], list_changed);
    assert_eq!(msgs[1]["id"], 7);
    assert!(
        msgs[1]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("fault__echo")
    );
    // On the session's event stream: the same notification, as `tools_changed`.
    let event = a_events.next().await;
    assert_eq!(event.event.as_deref(), Some("tools_changed"));
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap(),
        list_changed
    );
    assert_eq!(a.served_tool_names().await, ["fault__echo", "tool_search"]);

    // Activating it again changes nothing: no notification on the call stream, and the next
    // event on the session stream is the progress that follows, not another tools_changed.
    let msgs = activate(&a, "select:fault__echo,fault__progress").await;
    assert_eq!(msgs[0], list_changed, "fault__progress is new: {msgs:?}");
    assert_eq!(
        a_events.next().await.event.as_deref(),
        Some("tools_changed")
    );
    a.served_tool_names().await;
    let msgs = activate(&a, "select:fault__echo").await;
    assert_eq!(msgs.len(), 1, "only the result: {msgs:?}");
    // ...and it is the schema again, not "Not found" (the model may have lost it).
    let text = msgs[0]["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains(r#""name":"fault__echo""#) && !text.contains("Not found"),
        "{text}"
    );
    a.call(
        json!(8),
        "fault__progress",
        json!({ "steps": 1, "interval_ms": 1 }),
        Some(json!("after")),
    )
    .await;
    let event = a_events.next().await;
    assert_eq!(event.event, None, "progress, not tools_changed: {event:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["token"],
        "after"
    );

    // The other session was told nothing: its next call stream has no notification, and the
    // first event on its stream is its own progress.
    let msgs = activate(&b, "select:nope__x").await;
    assert_eq!(msgs.len(), 1, "only the result: {msgs:?}");
    assert!(
        msgs[0]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Not found: nope__x")
    );
    assert_eq!(b.served_tool_names().await, ["tool_search"]);
    activate(&b, "select:fault__progress").await;
    let event = b_events.next().await;
    assert_eq!(event.event.as_deref(), Some("tools_changed"), "b's own");
    b.call(
        json!(9),
        "fault__progress",
        json!({ "steps": 1, "interval_ms": 1 }),
        Some(json!("b")),
    )
    .await;
    let event = b_events.next().await;
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["token"],
        "b"
    );
}

/// `GET /session/{id}/events` on a socket whose receive buffer is 4 KiB, not read from yet.
async fn stalled_subscriber(base: &str, id: &str, token: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /session/{id}/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The subscription exists once the response head is sent; wait for its first bytes without
    // reading them, so the burst below finds it subscribed.
    let mut probe = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut probe))
        .await
        .expect("the event stream answers")
        .unwrap();
    stream
}

/// Reads the stalled stream until its `event: lagged`, and returns that event's data.
async fn read_until_lagged(stream: &mut tokio::net::TcpStream) -> Value {
    use tokio::io::AsyncReadExt;
    const MARK: &str = "event: lagged\ndata: ";
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a lagged event within 10 s of reading")
            .unwrap();
        assert!(n > 0, "the stream ended before a lagged event");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(at) = text.find(MARK) {
            let rest = &text[at + MARK.len()..];
            if let Some(end) = rest.find('\n') {
                return serde_json::from_str(&rest[..end]).unwrap();
            }
        }
        // Keep memory bounded: only the tail can hold a split mark.
        if seen.len() > 1 << 20 {
            seen.drain(..seen.len() - 4096);
        }
    }
}

/// A second `tools/call` with the id of one still in flight in the session is refused with
/// `-32600` (JSON-RPC ids are unique among pending requests); the first runs on, and the id
/// is free again once it answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_id_already_in_flight_is_refused() {
    let s = Served::start("").await;
    let session = s.session().await;
    session
        .call_text("tool_search", json!({ "query": "select:fault__sleep" }))
        .await;
    let first = tokio::spawn({
        let session = session.clone();
        async move {
            session
                .call(json!(42), "fault__sleep", json!({ "ms": 1500 }), None)
                .await
        }
    });
    // In flight once the fault server has it.
    eventually_async("the first call at the server", async || {
        s.recorded()
            .iter()
            .any(|m| m["params"]["name"] == "sleep" && m["params"]["arguments"]["ms"] == 1500)
    })
    .await;
    let request = json!({
        "jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": { "name": "fault__sleep", "arguments": { "ms": 1 } },
    });
    let (status, body) = session.rpc(request.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], 42, "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert_eq!(
        body["error"]["message"],
        "request id 42 is already in flight in this session; use a new id"
    );
    let events = first.await.unwrap();
    assert!(
        events.iter().any(|e| e.data.contains("slept 1500 ms")),
        "the first call ran on: {events:?}"
    );
    let again = session
        .call(json!(42), "fault__sleep", json!({ "ms": 1 }), None)
        .await;
    assert!(
        again.iter().any(|e| e.data.contains("slept 1 ms")),
        "{again:?}"
    );
}
