//! A session manager that misbehaves, under the real daemon: a fake sidecar on the Unix socket
//! that answers its health checks but garbles everything else (text that is not JSON, JSON of
//! the wrong shape, a body past the size cap, bytes that are not HTTP). Each tool gets a
//! precise error result, and every such answer counts as a failure for the circuit breaker,
//! which opens after `failure_threshold` of them.

use std::path::Path;

use serde_json::{Value, json};

use crate::mcp_server::{Served, Session};
use crate::sidecars::{text, tool};

/// The fake sidecar (Node, no dependencies): raw HTTP/1.1 on the socket given as `--socket`,
/// one request per connection. `GET /health` is healthy; every other route has its own fault.
const FAKE_SIDECAR: &str = r#"
import fs from 'node:fs';
import net from 'node:net';

const sock = process.argv[process.argv.indexOf('--socket') + 1];
try { fs.unlinkSync(sock); } catch {}

function respond(conn, body, type = 'application/json') {
  const bytes = Buffer.from(body);
  conn.end(Buffer.concat([
    Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: ${type}\r\ncontent-length: ${bytes.length}\r\nconnection: close\r\n\r\n`),
    bytes,
  ]));
}

function handle(conn, method, path) {
  const route = `${method} ${path.split('?')[0]}`;
  if (route === 'GET /health') return respond(conn, JSON.stringify({ status: 'ok' }));
  if (route === 'GET /agents') return respond(conn, '<html>not json</html>', 'text/html');
  if (route === 'GET /chat/rooms') return respond(conn, JSON.stringify({ rooms: 'none' }));
  if (route === 'POST /chat/rooms') return respond(conn, JSON.stringify([1, 2, 3]));
  if (route === 'GET /agents/ag_x') return respond(conn, JSON.stringify({ id: 'ag_x' }));
  if (route === 'GET /chat/rooms/room_x/messages') {
    return respond(conn, JSON.stringify({ messages: [], pad: 'x'.repeat(9 * 1024 * 1024) }));
  }
  if (route === 'GET /agents/ag_x/events') return conn.end('garbage that is not HTTP\r\n\r\n');
  return respond(conn, JSON.stringify({ unexpected: route }));
}

net.createServer((conn) => {
  let head = Buffer.alloc(0);
  conn.on('error', () => {});
  conn.on('data', (chunk) => {
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0 || conn.answered) return;
    const lines = head.subarray(0, end).toString('latin1').split('\r\n');
    const length = Number((lines.find((l) => /^content-length:/i.test(l)) || ':0').split(':')[1]);
    if (head.length < end + 4 + length) return;
    conn.answered = true;
    const [method, path] = lines[0].split(' ');
    handle(conn, method, path);
  });
}).listen(sock);
process.on('SIGTERM', () => process.exit(0));
"#;

fn config(home: &Path, script: &Path) -> String {
    let command = serde_json::to_string(&["node", &script.display().to_string()]).unwrap();
    format!(
        r#"
[session_manager]
enabled = true
command = {command}
socket_path = "{sock}"
liveness_interval_secs = 1
liveness_failures = 3

[session_manager.breaker]
failure_threshold = 3
recovery_timeout_secs = 600
max_recovery_timeout_secs = 600
"#,
        sock = home.join("fake.sock").display(),
    )
}

async fn breaker(session: &Session) -> Value {
    tool(session, "get_circuit_breaker_status", json!({})).await["structuredContent"].clone()
}

/// Calls `name` and expects an error result with exactly `want`.
async fn fails_with(session: &Session, name: &str, args: Value, want: &str) {
    let r = tool(session, name, args).await;
    assert_eq!(r["isError"], true, "{name}: {r}");
    assert_eq!(text(&r), want, "{name}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_sidecar_answers_are_precise_errors_that_open_the_breaker() {
    let home = tempfile::tempdir().unwrap();
    let script = home.path().join("fake-sidecar.mjs");
    std::fs::write(&script, FAKE_SIDECAR).unwrap();
    let served = Served::start(&config(home.path(), &script)).await;
    let session = served.session().await;
    // Ready (its health checks pass) before any tool is tried.
    let (gw, token) = served.gateway();
    let http = reqwest::Client::new();
    let mut state = Value::Null;
    for _ in 0..300 {
        let sm: Value = http
            .get(format!("{gw}/api/actors/root/sidecars/session_manager"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        state = sm["state"].clone();
        if state == "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        state, "running",
        "the fake sidecar passes its health checks"
    );

    // Three malformed answers: three failures, and the breaker opens on the third.
    fails_with(
        &session,
        "list_agents",
        json!({}),
        "the session manager's answer to GET /agents was unusable: not JSON: expected value at line 1 column 1",
    )
    .await;
    let b = breaker(&session).await;
    assert_eq!(
        (b["state"].as_str(), b["consecutive_failures"].as_u64()),
        (Some("closed"), Some(1)),
        "{b}"
    );
    fails_with(
        &session,
        "list_chat_rooms",
        json!({}),
        "the session manager's answer to GET /chat/rooms was unusable: unexpected answer: `rooms` is a string, expected an array",
    )
    .await;
    assert_eq!(breaker(&session).await["consecutive_failures"], 2);
    fails_with(
        &session,
        "create_chat_room",
        json!({ "name": "r" }),
        "the session manager's answer to POST /chat/rooms was unusable: unexpected answer: expected a JSON object, got an array",
    )
    .await;
    let b = breaker(&session).await;
    assert_eq!(b["state"], "open", "{b}");
    assert_eq!(b["total_opens"], 1);
    assert_eq!(b["last_transition"]["reason"], "failure_threshold");
    assert_eq!(b["total_failures"], 3);

    // Open: the next call is rejected without reaching the sidecar.
    let r = tool(&session, "get_agent_health", json!({})).await;
    assert_eq!(r["isError"], true, "{r}");
    assert!(
        text(&r).starts_with("circuit breaker open: next probe in "),
        "{r}"
    );
    let b = breaker(&session).await;
    assert_eq!(
        (b["total_failures"].as_u64(), b["total_rejections"].as_u64()),
        (Some(3), Some(1)),
        "{b}"
    );
    // The dashboard reports the agents section as unavailable instead of failing as a whole.
    let dash = tool(&session, "system_dashboard", json!({})).await;
    assert_eq!(dash["isError"], false, "{dash}");
    assert!(
        dash["structuredContent"]["agents"]["unavailable"]
            .as_str()
            .unwrap()
            .starts_with("circuit breaker open"),
        "{dash}"
    );
    assert_eq!(
        dash["structuredContent"]["health"]["circuit_breaker"]["state"],
        "open"
    );

    // After a reset: a missing field, an oversized body and non-HTTP bytes, three more failures.
    let reset = tool(&session, "reset_circuit_breaker", json!({})).await;
    assert_eq!(reset["structuredContent"]["state"], "closed", "{reset}");
    fails_with(
        &session,
        "wait_for_agent",
        json!({ "agent_id": "ag_x", "timeout_secs": 5 }),
        "the session manager's answer to GET /agents/ag_x was unusable: unexpected answer: `status` is missing (expected a string)",
    )
    .await;
    fails_with(
        &session,
        "read_chat_messages",
        json!({ "room_id": "room_x" }),
        "the session manager's answer to GET /chat/rooms/room_x/messages?limit=50&since=0 was unusable: reading the body: length limit exceeded",
    )
    .await;
    let r = tool(
        &session,
        "get_agent_activity",
        json!({ "agent_id": "ag_x" }),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    assert!(
        text(&r).starts_with(
            "the session manager's answer to GET /agents/ag_x/events?since=0&limit=200 was unusable: "
        ),
        "{r}"
    );
    let b = breaker(&session).await;
    assert_eq!(b["state"], "open", "{b}");
    assert_eq!(
        (b["total_failures"].as_u64(), b["total_opens"].as_u64()),
        (Some(6), Some(2)),
        "{b}"
    );

    // The daemon and the sidecar stay up throughout.
    let health: Value = http
        .get(format!("{gw}/api/health"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sm: Value = http
        .get(format!("{gw}/api/actors/root/sidecars/session_manager"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (sm["state"].as_str(), sm["restarts"].as_u64()),
        (Some("running"), Some(0)),
        "{sm}"
    );
    assert_eq!(health["status"], "healthy", "{health}");
}
