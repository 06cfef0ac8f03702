//! A session manager that misbehaves or cannot run, under the real daemon.
//!
//! - A fake sidecar on the Unix socket that answers its health checks but garbles everything
//!   else (text that is not JSON, JSON of the wrong shape, a body past the size cap, bytes
//!   that are not HTTP): each tool gets a precise error result, and every such answer counts as
//!   a failure for the circuit breaker, which opens after `failure_threshold` of them.
//! - Node absent from `PATH`, and a script path that does not exist: the daemon stays up,
//!   introspection shows the sidecar failed with the OS error (or Node's own message), tools
//!   that need it say why they cannot, and `revka doctor` fails with one line per problem.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{
    DEADLINE, Served, Session, TestDaemon, TestHome, eventually_async, try_within_async,
};
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
    let mut state = Value::Null;
    let _ = try_within_async(DEADLINE, async || {
        let sm: Value = served
            .api("/api/actors/root/sidecars/session_manager")
            .await;
        state = sm["state"].clone();
        state == "running"
    })
    .await;
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
    let health: Value = served.api("/api/health").await;
    let sm: Value = served
        .api("/api/actors/root/sidecars/session_manager")
        .await;
    assert_eq!(
        (sm["state"].as_str(), sm["restarts"].as_u64()),
        (Some("running"), Some(0)),
        "{sm}"
    );
    assert_eq!(health["status"], "healthy", "{health}");
}

/// Polls the session manager's introspection node until its supervisor gives up on it.
async fn until_sidecar_failed(served: &Served) -> Value {
    let mut node = Value::Null;
    let failed = try_within_async(Duration::from_secs(60), async || {
        node = served
            .api("/api/actors/root/sidecars/session_manager")
            .await;
        node["state"] == "failed"
    })
    .await;
    match failed {
        Some(()) => node,
        None => panic!("the session manager never reached `failed`: {node}"),
    }
}

/// Starts the daemon on `home` with extra environment, like [`Served::start`] but without an
/// MCP server of its own.
async fn serve(home: TestHome, env: &[(&str, &str)]) -> Served {
    let daemon = TestDaemon::start(&home, env);
    let discovery = home.path().join("mcp.json");
    eventually_async("mcp.json written", async || discovery.exists()).await;
    let doc: Value = serde_json::from_slice(&std::fs::read(&discovery).unwrap()).unwrap();
    let url = doc["url"].as_str().unwrap().to_owned();
    Served {
        base: url.trim_end_matches("/mcp").to_owned(),
        url,
        daemon,
        record: home.path().join("unused.jsonl"),
        home,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
    }
}

/// `revka doctor` on `home` with extra environment: (exit code, stdout).
fn doctor(home: &TestHome, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = home.command();
    cmd.env("RUST_LOG", "off")
        .env("NO_COLOR", "1")
        .arg("doctor");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn session_manager_table(home: &Path, command: &[&str]) -> String {
    format!(
        r#"
[operator]
enabled = false

[session_manager]
enabled = true
command = {command}
socket_path = "{sock}"
"#,
        command = serde_json::to_string(command).unwrap(),
        sock = home.join("sm.sock").display(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn without_node_on_path_the_daemon_stays_up_and_says_why_the_sidecar_is_down() {
    let home = TestHome::new();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecars/session-manager/session-manager.js");
    let sock = home.path().join("sm.sock");
    home.write_config(&session_manager_table(
        home.path(),
        &["node", &script.display().to_string()],
    ));
    // A PATH with no `node` on it.
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().display().to_string();
    let env = [("PATH", path.as_str())];
    let served = serve(home, &env).await;
    let session = served.session().await;

    // Introspection: failed after its restarts, with the OS error.
    let node = until_sidecar_failed(&served).await;
    let cannot = "cannot start `node`: No such file or directory (os error 2)";
    assert_eq!(node["last_failure"]["reason"], cannot, "{node}");
    assert!(node["restarts"].as_u64().unwrap() >= 1, "{node}");
    let health = served.api("/api/health").await;
    assert_eq!(health["status"], "degraded", "{health}");

    // A tool that needs it: the socket error, then why the process is not there.
    let r = tool(&session, "list_agents", json!({})).await;
    assert_eq!(r["isError"], true, "{r}");
    let restarts = node["restarts"].as_u64().unwrap();
    assert_eq!(
        text(&r),
        format!(
            "the session manager is not reachable at {}: No such file or directory (os error 2); \
             the session manager process is failed after {restarts} restart(s); last failure: {cannot} \
             (`revka status --path root/sidecars/session_manager`)",
            sock.display()
        )
    );
    // The daemon's own tools still answer; the dashboard shows the failed sidecar.
    let dash = tool(&session, "system_dashboard", json!({})).await;
    assert_eq!(dash["isError"], false, "{dash}");
    let sidecar = &dash["structuredContent"]["health"]["sidecars"][0];
    assert_eq!(
        (sidecar["name"].as_str(), sidecar["state"].as_str()),
        (Some("session_manager"), Some("failed")),
        "{dash}"
    );
    assert_eq!(sidecar["last_failure"]["reason"], cannot);
    assert!(
        dash["structuredContent"]["agents"]["unavailable"]
            .as_str()
            .unwrap()
            .contains(cannot),
        "{dash}"
    );

    // doctor, with the same PATH: Node is missing, the session manager does not answer.
    let (code, out) = doctor(&served.home, &env);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "FAIL node: cannot run `node`: No such file or directory (os error 2)\n       hint: install Node.js 18 or newer (the session manager needs it)"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "FAIL session manager: the session manager is not reachable at {}",
            sock.display()
        )),
        "{out}"
    );
    assert!(out.contains("session_manager (failed)"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_sidecar_script_is_named_in_introspection_tools_and_doctor() {
    let home = TestHome::new();
    let script = home.path().join("not-installed/session-manager.js");
    let script = script.display().to_string();
    home.write_config(&session_manager_table(home.path(), &["node", &script]));
    let served = serve(home, &[]).await;
    let session = served.session().await;

    let node = until_sidecar_failed(&served).await;
    assert_eq!(
        node["last_failure"]["reason"]
            .as_str()
            .unwrap()
            .split(" (stderr")
            .next(),
        Some("process exited with status 1"),
        "{node}"
    );
    let stderr = node["details"]["stderr_tail"].as_str().unwrap();
    assert!(
        stderr.contains(&format!("Cannot find module '{script}'")),
        "{node}"
    );

    let r = tool(&session, "create_agent", json!({ "backend": "echo" })).await;
    assert_eq!(r["isError"], true, "{r}");
    let message = text(&r);
    assert!(
        message.contains(&format!(
            "; its script {script} does not exist ([session_manager] command)"
        )),
        "{message}"
    );
    assert!(
        message.contains("the session manager process is failed after"),
        "{message}"
    );

    let (code, out) = doctor(&served.home, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "FAIL session manager script: no script at {script}\n       hint: run: revka install --sidecars-only --with-session-manager"
        )),
        "{out}"
    );
    assert!(out.contains("ok   node: `node` is Node.js "), "{out}");
}
